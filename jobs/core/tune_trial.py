"""The Tune trial the `tune`, `asha` and `checkpoint` stages share.

A function trainable: complete the stage's `TrainingSpec` with the trial's config (a
`TrialSpec`: its hyperparameters come from the config and nowhere else), build a
`Trainer` from it, resume from `tune.get_checkpoint()` when Tune hands one back, then per epoch
train, validate and `tune.report` the metrics (with a checkpoint when the spec asks for it).
The spec travels through `tune.with_parameters`, so the trial config, the progress table and
results.json hold only hyperparameters.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from ray import tune

from jobs.core.connection import quiet_known_noise
from jobs.core.resources import placement, set_threads, trial_device
from jobs.core.training_spec import TrainingSpec, TrialSpec, config_key


class InjectedFailure(RuntimeError):
    """Raised once per trial by FAIL_AT_EPOCH, to exercise FailureConfig retries."""


# Under the experiment folder: one empty file per trial config that FAIL_AT_EPOCH failed.
INJECTED_DIR = "injected_failures"


def fail_once(spec: TrialSpec, config: dict[str, Any], epoch: int) -> None:
    """FAIL_AT_EPOCH: raise the first time this trial reaches that epoch, never again.

    Remembered on the shared storage, not inferred from the trial's checkpoints: a trial
    that fails in its first epoch has none, and its retry must still get past the epoch.
    Keyed by the trial's config, not its id: `--resume` restarts an errored trial under a
    new id. (Two trials with identical configs would share one failure.)
    """
    if spec.fail_at_epoch != epoch:
        return
    marker = Path(spec.experiment_dir) / INJECTED_DIR / f"config-{config_key(config):08x}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    raise InjectedFailure(f"injected failure at epoch {epoch} (FAIL_AT_EPOCH)")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (what TRIAL_MEMORY_MIB must cover)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def train_trial(config: dict[str, Any], spec: TrainingSpec) -> None:
    # torch and the model are imported here, in the trial's process: the driver that hands
    # this function to Tune never trains, and starts ~6 s sooner without them.
    from jobs.core import checkpoints
    from jobs.core.trainer import Trainer, format_epoch

    quiet_known_noise()
    trial = spec.for_trial(config)
    set_threads(trial.cpus)
    device = trial_device(trial.use_gpu)
    trainer = Trainer(trial, device=device)
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        start = trainer.load_state(checkpoints.load(checkpoint, device))
    trial_id = tune.get_context().get_trial_id()
    placed = placement(device)
    if start:
        print(f"[{trial_id}] resumed from the checkpoint of epoch {start}", flush=True)
    for epoch in range(start + 1, trial.num_epochs + 1):
        fail_once(trial, config, epoch)
        result = trainer.run_epoch(epoch)
        print(format_epoch(trial_id, result, trial.num_epochs, device), flush=True)
        metrics = {**result.metrics(), "start_epoch": start, "peak_rss_mib": peak_rss_mib()}
        metrics.update(placed)
        if not trial.checkpoint:
            tune.report(metrics)
            continue
        with checkpoints.saved(trainer.state(epoch), tune.Checkpoint) as saved:
            tune.report(metrics, checkpoint=saved)
