"""Running a Tune stage: resources, fresh-or-resume, fit, results.json, leaderboard.

A stage module describes only what its part of the walkthrough adds (search algorithm,
scheduler, stoppers, trainable); `run` does the rest the same way for every stage.

Experiment recovery applies to every Tune stage: when `<STORAGE_PATH>/<stage>` holds a
previous experiment, the run resumes it with `Tuner.restore(..., restart_errored=True)`
instead of starting a new one under the same name, which would overwrite its restore state
(ray#35812). `--fresh` archives the old experiment first; nothing is deleted. This is what
turns a KubeRay `backoffLimit` retry (new cluster, same PVC) into a resume.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from jobs import report, results
from jobs.config import ConfigError, Settings
from jobs.engine import DataSpec
from jobs.resources import TrialPlan
from jobs.runtime import connect_and_plan
from jobs.trial import TrialSpec, train_trial

LR_RANGE = (1e-4, 1e-1)  # the walkthrough's tune.loguniform(1e-4, 1e-1)


def search_space(settings: Settings) -> dict[str, Any]:
    return {
        "lr": tune.loguniform(*LR_RANGE),
        "batch_size": settings.batch_size,
        "num_epochs": settings.num_epochs,
    }


def data_spec(settings: Settings) -> DataSpec:
    return DataSpec(settings.data_dir, settings.dataset, settings.train_limit, settings.val_limit)


def trial_trainable(settings: Settings, plan: TrialPlan, *, checkpoint: bool = False) -> Any:
    spec = TrialSpec(
        data=data_spec(settings),
        use_gpu=plan.use_gpu,
        cpus=plan.cpus_per_trial,
        seed=settings.seed,
        checkpoint=checkpoint,
        fail_at_epoch=settings.fail_at_epoch,
    )
    return tune.with_parameters(train_trial, spec=spec)


@dataclass(frozen=True)
class TuneStage:
    """What one walkthrough part adds on top of the shared run."""

    name: str
    tune_config: Callable[[Settings, TrialPlan], tune.TuneConfig]
    trainable: Callable[[Settings, TrialPlan], Any] = trial_trainable
    run_config: Callable[[Settings], dict[str, Any]] = field(default=lambda s: {})
    note_on_resume: str = ""
    # Epochs where a scheduler judges trials (for the plot).
    rungs: Callable[[Settings], tuple[int, ...]] = field(default=lambda s: ())
    # Extra outputs once fit() returns (e.g. the best model); returns the files written.
    after_fit: Callable[[Settings, Any, dict[str, Any]], list[Path]] | None = None


def experiment_exists(path: Path) -> bool:
    return tune.Tuner.can_restore(str(path))


def preflight(settings: Settings) -> None:
    """Checks of the experiment folder that must fail before any cluster work."""
    if settings.resume and not experiment_exists(settings.experiment_dir):
        raise ConfigError(f"--resume: no experiment to resume in {settings.experiment_dir}")


def archive(path: Path) -> Path:
    target = path.with_name(f"{path.name}.archived-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(target)
    print(f"[experiment] --fresh: moved the previous experiment to {target}", flush=True)
    return target


def open_tuner(
    stage: TuneStage,
    settings: Settings,
    plan: TrialPlan,
    trainable: Any,
) -> tune.Tuner:
    path = settings.experiment_dir
    if experiment_exists(path):
        if settings.fresh:
            archive(path)
        else:
            print(
                f"[experiment] resuming {path}: finished trials are kept, unfinished ones "
                "continue from their last checkpoint, errored ones restart; the settings of "
                "the original run apply (pass --fresh to start over)",
                flush=True,
            )
            if stage.note_on_resume:
                print(f"[experiment] note: {stage.note_on_resume}", flush=True)
            return tune.Tuner.restore(str(path), trainable=trainable, restart_errored=True)
    return tune.Tuner(
        trainable,
        param_space=search_space(settings),
        tune_config=stage.tune_config(settings, plan),
        run_config=tune.RunConfig(
            name=stage.name,
            storage_path=settings.storage_path,
            verbose=1,
            **stage.run_config(settings),
        ),
    )


def run(stage: TuneStage, settings: Settings) -> dict[str, Any]:
    started = time.monotonic()
    plan = connect_and_plan(settings)
    print(f"[experiment] {stage.name}: {plan.describe()}", flush=True)
    trainable = tune.with_resources(stage.trainable(settings, plan), plan.resources)
    grid = open_tuner(stage, settings, plan, trainable).fit()
    records = [results.record_from_result(r, settings.num_epochs) for r in grid]
    summary = results.summarize(
        stage.name, settings.metric, settings.mode, records, time.monotonic() - started
    )
    histories = {rec.trial_id: report.history_of(r) for rec, r in zip(records, grid, strict=True)}
    written = report.finish(
        settings.experiment_dir,
        summary,
        histories,
        plan.device,
        plan.device_units(),
        stage.rungs(settings),
    )
    if stage.after_fit is not None:
        written += stage.after_fit(settings, grid, summary)
    path = results.write(settings.experiment_dir, summary)
    print(results.leaderboard(summary), flush=True)
    for item in (path, *written):
        print(f"[experiment] wrote {item}", flush=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[experiment] driver peak RSS: {peak_mib:.0f} MiB", flush=True)
    return summary
