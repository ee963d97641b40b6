"""The Tune trial the `tune`, `asha` and `checkpoint` stages share.

A function trainable: build a `Trainer`, resume from `tune.get_checkpoint()` when Tune hands
one back, then per epoch train, validate and `tune.report` the metrics (with a checkpoint when
the stage asks for it). Static settings travel through `tune.with_parameters`, so the trial
config, the progress table and results.json hold only hyperparameters.
"""

from __future__ import annotations

import json
import resource
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from jobs.core import checkpoints
from jobs.core.connection import quiet_known_noise
from jobs.core.resources import placement, set_threads, trial_device
from jobs.core.trainer import DataSpec, Trainer, format_epoch


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs besides its hyperparameters."""

    data: DataSpec
    use_gpu: bool
    cpus: int
    seed: int
    checkpoint: bool  # checkpoint every epoch (the checkpoint stage)
    fail_at_epoch: int | None = None  # fault injection, for the resume tests
    per_trial_seed: bool = False  # TRIAL_SEEDS=per-trial
    # The experiment folder on the shared storage: where FAIL_AT_EPOCH remembers that a
    # trial already failed, whichever node or attempt runs it next.
    experiment_dir: str = ""


def config_key(config: dict[str, Any]) -> int:
    """A number that names a trial by its config: the same across retries, restores and
    `restart_errored` (which gives an errored trial a new trial id, tune/experiment/trial.py
    Trial.reset)."""
    return zlib.crc32(json.dumps(config, sort_keys=True, default=str).encode())


def trial_seed(seed: int, per_trial: bool, config: dict[str, Any]) -> int:
    """SEED for every trial (TRIAL_SEEDS=shared), or SEED plus a number derived from the
    trial's config (per-trial): the same config always gets the same seed, also on resume."""
    if not per_trial:
        return seed
    return seed + config_key(config)


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


def train_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    quiet_known_noise()
    set_threads(spec.cpus)
    device = trial_device(spec.use_gpu)
    trainer = Trainer(
        spec.data,
        lr=config["lr"],
        batch_size=config["batch_size"],
        seed=trial_seed(spec.seed, spec.per_trial_seed, config),
        device=device,
    )
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        start = trainer.load_state(checkpoints.load(checkpoint, device))
    trial_id = tune.get_context().get_trial_id()
    placed = placement(device)
    if start:
        print(f"[{trial_id}] resumed from the checkpoint of epoch {start}", flush=True)
    for epoch in range(start + 1, config["num_epochs"] + 1):
        fail_once(spec, config, epoch)
        result = trainer.run_epoch(epoch)
        print(format_epoch(trial_id, result, config["num_epochs"], device), flush=True)
        metrics = {**result.metrics(), "start_epoch": start, "peak_rss_mib": peak_rss_mib()}
        metrics.update(placed)
        if not spec.checkpoint:
            tune.report(metrics)
            continue
        with checkpoints.saved(trainer.state(epoch), tune.Checkpoint) as saved:
            tune.report(metrics, checkpoint=saved)
