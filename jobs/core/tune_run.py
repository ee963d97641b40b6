"""Running a Tune stage: resources, fresh-or-resume, fit, then the shared outputs.

A stage file builds its part of the walkthrough's `tune.Tuner(...)` itself, in a function
`TuneRun.tuner` calls for a fresh experiment (param_space, TuneConfig with its searcher and
scheduler, RunConfig through `run_config`); calling the `TuneRun` does the rest the same way
for every Tune stage: size the trials for the cluster, resume or start, fit, write outputs.

Experiment recovery applies to every Tune stage: when `<STORAGE_PATH>/<stage>` holds a
previous experiment, the run resumes it with `Tuner.restore(..., restart_errored=True)`
instead of starting a new one under the same name, which would overwrite its restore state
(ray#35812). `--fresh` archives the old experiment first; nothing is deleted. This is what
turns a KubeRay `backoffLimit` retry (new cluster, same PVC) into a resume.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.core import records, retries, warm_start
from jobs.core.connection import connect_and_plan
from jobs.core.outputs import archive, finish
from jobs.core.parsers import ConfigError
from jobs.core.resources import ClusterView, TrialPlan, plan_trials
from jobs.core.settings import SPOT_RETRIES, Settings
from jobs.core.training_spec import training_spec

if TYPE_CHECKING:  # Ray Tune is imported where it runs: a stage file imports without it
    from ray import tune


def trial_trainable(settings: Settings, plan: TrialPlan, *, checkpoint: bool = False) -> Any:
    """The shared Tune trial with the stage's training spec (the trial config adds the rest)."""
    from ray import tune

    from jobs.core.tune_trial import train_trial

    spec = training_spec(settings, plan, checkpoint=checkpoint)
    return tune.with_parameters(train_trial, spec=spec)


def experiment_exists(path: Path) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(str(path))


def preflight(settings: Settings, *, takes_warm_start: bool = False) -> None:
    """Checks of the experiment folder (and WARM_START's run) that must fail before any
    cluster work."""
    exists = experiment_exists(settings.experiment_dir)
    if settings.resume and not exists:
        raise ConfigError(f"--resume: no experiment to resume in {settings.experiment_dir}")
    resuming = settings.resume or (exists and not settings.fresh)
    warm_start.check(settings, takes_it=takes_warm_start, resuming=resuming)


def resume_message(path: Path, checkpoints: bool) -> str:
    unfinished = (
        "unfinished ones continue from their last checkpoint"
        if checkpoints
        else "unfinished ones start again from epoch 1 (this stage saves no checkpoints)"
    )
    return (
        f"[experiment] resuming {path}: finished trials are kept, {unfinished}, errored ones "
        "restart; the settings of the original run apply (pass --fresh to start over)"
    )


def run_config(settings: Settings, **fields: Any) -> tune.RunConfig:
    """A stage's `tune.RunConfig` with its own `fields` (failure_config, checkpoint_config,
    stop): named after the stage on the shared storage path (where a resume and `make
    results` find it), each trial's stdout and stderr in its folder on the volume, and under
    SPOT, SPOT_RETRIES more retries per trial and, where the stage keeps no checkpoints of its
    own, only the latest one."""
    from ray import tune

    if settings.spot:
        own = fields.get("failure_config") or tune.FailureConfig()
        retries = dataclasses.replace(own, max_failures=own.max_failures + SPOT_RETRIES)
        kept = fields.get("checkpoint_config") or tune.CheckpointConfig(num_to_keep=1)
        fields = {**fields, "failure_config": retries, "checkpoint_config": kept}
    return tune.RunConfig(
        name=settings.stage,
        storage_path=settings.storage_path,
        verbose=1,
        # Tune uploads the trial's working folder with every checkpoint and at its end.
        log_to_file=True,
        sync_config=tune.SyncConfig(sync_artifacts=True),
        **fields,
    )


@dataclass(frozen=True, kw_only=True)
class TuneRun:
    """A Tune stage: the Tuner its part of the walkthrough builds, and what the shared run
    needs to know about it; `Stage.run`."""

    # The fresh experiment's `tune.Tuner(trainable, param_space=..., tune_config=...,
    # run_config=...)`; `trainable` comes sized for the plan (tune.with_resources). A resume
    # restores the Tuner from the volume instead (its settings are the original run's).
    tuner: Callable[[Settings, TrialPlan, Any], tune.Tuner]
    # Default: the shared trial, checkpointing every epoch when `checkpoints` says so.
    trainable: Callable[[Settings, TrialPlan], Any] | None = None
    # Whether trials save checkpoints (what a resume continues from).
    checkpoints: bool = False
    note_on_resume: str = ""
    # Epochs where a scheduler judges trials (for the plot).
    rungs: Callable[[Settings], tuple[int, ...]] = field(default=lambda s: ())
    # Extra outputs once fit() returns (e.g. the best model); returns the files written.
    after_fit: Callable[[Settings, Any, records.Summary], list[Path]] | None = None
    # Sizes one trial for a cluster (the stage's resource-planning hook).
    plan: Callable[[Settings, ClusterView], TrialPlan] = plan_trials
    # How a resume runs errored trials again: "restart" (Trial.reset: a new trial id) or
    # "resume" (the same id, from its checkpoint or, without one, from epoch 1). A searcher
    # that tracks trials by id (Optuna) needs "resume": a restarted trial's new id is unknown
    # to it, and its first result raises KeyError out of fit() (OptunaSearch.on_trial_result).
    errored: str = "restart"
    # Whether its searcher starts from WARM_START's trials (Optuna); the others refuse it.
    warm_start: bool = False
    # Whether a trial may hold a share of a GPU (GPUS_PER_TRIAL < 1).
    gpu_share: bool = True

    def preflight(self, settings: Settings) -> None:
        if settings.gpus_per_trial < 1 and not self.gpu_share:
            raise ConfigError(
                f"GPUS_PER_TRIAL={settings.gpus_per_trial:g}: the {settings.stage} stage's Train "
                "workers each need a whole GPU (NCCL runs one rank per GPU); leave it at 1"
            )
        preflight(settings, takes_warm_start=self.warm_start)

    def saves_checkpoints(self, settings: Settings) -> bool:
        """The stage's own choice, or every epoch where a node may be reclaimed (SPOT)."""
        return self.checkpoints or settings.spot

    def make_trainable(self, settings: Settings, plan: TrialPlan) -> Any:
        if self.trainable is not None:
            return self.trainable(settings, plan)
        return trial_trainable(settings, plan, checkpoint=self.saves_checkpoints(settings))

    def open_tuner(self, settings: Settings, plan: TrialPlan, trainable: Any) -> tune.Tuner:
        from ray import tune

        path = settings.experiment_dir
        if experiment_exists(path):
            if settings.fresh:
                target = archive(path)
                print(
                    f"[experiment] --fresh: moved the previous experiment to {target}", flush=True
                )
            else:
                print(resume_message(path, self.saves_checkpoints(settings)), flush=True)
                if self.note_on_resume:
                    print(f"[experiment] note: {self.note_on_resume}", flush=True)
                return tune.Tuner.restore(
                    str(path),
                    trainable=trainable,
                    restart_errored=self.errored == "restart",
                    resume_errored=self.errored == "resume",
                )
        if settings.warm_start is not None:
            found = warm_start.earlier_trials(settings)
            print(warm_start.summary_line(found, settings.warm_start), flush=True)
            warm_start.remember(settings)
        return self.tuner(settings, plan, trainable)

    def __call__(self, settings: Settings) -> records.Summary:
        from ray import tune

        from jobs.core.oom import tolerate_memory_kills
        from jobs.core.tensorboard import load_tensorboardx

        started = time.monotonic()
        plan = connect_and_plan(settings, self.plan)
        print(f"[experiment] {settings.stage}: {plan.describe()}", flush=True)
        trainable = tune.with_resources(self.make_trainable(settings, plan), plan.resources)
        tolerate_memory_kills()
        load_tensorboardx()  # before Tune adds its TensorBoard logger: no torch here
        grid = self.open_tuner(settings, plan, trainable).fit()
        histories = [records.history_of(r) for r in grid]
        trials = [
            records.record_from_result(r, settings.num_epochs, h)
            for r, h in zip(grid, histories, strict=True)
        ]
        summary = records.Summary(
            settings.stage, settings.metric, settings.mode, trials, time.monotonic() - started
        )
        by_id = {rec.trial_id: h for rec, h in zip(trials, histories, strict=True)}
        retried = retries.summarize(
            retries.from_result(rec.trial_id, r) for rec, r in zip(trials, grid, strict=True)
        )
        extra = self.after_fit(settings, grid, summary) if self.after_fit is not None else []
        finish(settings, summary, by_id, plan, self.rungs(settings), extra, retried)
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"[experiment] driver peak RSS: {peak_mib:.0f} MiB", flush=True)
        return summary
