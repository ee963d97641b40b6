"""Part 4 of the walkthrough: checkpointing and fault tolerance.

Every epoch the trial saves model, optimizer and epoch with `tune.report(...,
checkpoint=...)` and resumes from `tune.get_checkpoint()`; `FailureConfig(max_failures=2)`
retries a failed trial from its last checkpoint; the experiment lives on the shared path,
and running the stage again resumes it (see jobs.core.tune_run). The stage's own settings
add the walkthrough's custom Stopper, a per-trial time limit and an experiment time budget;
at the end it exports the best checkpoint as best_model.pt and prints its path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.core import cli, tune_run
from jobs.core.export import export_best_model
from jobs.core.parsers import integer, optional, positive_float
from jobs.core.resources import TrialPlan
from jobs.core.search import random_search, search_space
from jobs.core.settings import Settings, setting
from jobs.core.stage import Kubernetes, Stage

if TYPE_CHECKING:
    from ray import tune

    from jobs.core.stoppers import ThresholdStopper

MAX_FAILURES = 2
# Kept per trial: its best checkpoint by the tuned metric and mode (what best_model.pt
# exports), plus the latest one, which Tune never deletes (what a retry resumes from).
# num_to_keep=1 also makes Tune snapshot the experiment after every trial checkpoint, so a
# killed driver loses at most the epoch in flight (the snapshot otherwise lags by >= 1 s).
KEEP_CHECKPOINTS = 1


def off_unless_set(env: str, help: str) -> Any:
    """A limit that is off unless set to a finite number > 0."""
    return setting(None, env=env, parse=optional(positive_float), shown="off", help=help)


@dataclass(frozen=True, kw_only=True)
class StopOptions:
    """The checkpoint stage's own settings (Settings.options)."""

    stop_all_at: float | None = off_unless_set(
        "STOP_ALL_AT",
        "the walkthrough's custom Stopper: end the whole experiment once any trial's "
        "metric reaches this value (walkthrough: 0.05)",
    )
    stop_trial_worse_than: float | None = off_unless_set(
        "STOP_TRIAL_WORSE_THAN",
        "the Stopper's per-trial rule: stop a trial whose metric is still worse than this "
        "after STOP_TRIAL_AFTER epochs (walkthrough: 1.0)",
    )
    stop_trial_after: int = setting(
        5,
        env="STOP_TRIAL_AFTER",
        parse=integer(1),
        help="epochs before STOP_TRIAL_WORSE_THAN applies",
    )
    trial_time_limit_s: float | None = off_unless_set(
        "TRIAL_TIME_LIMIT_S",
        "stop each trial after this many seconds",
    )
    time_budget_s: float | None = off_unless_set(
        "TIME_BUDGET_S",
        "stop the whole experiment after this many seconds",
    )


def __getattr__(name: str) -> Any:
    """`jobs.checkpoint.ThresholdStopper`, where the Stopper was before jobs/core/stoppers.py:
    an experiment saved then pickled its RunConfig (tuner.pkl) with that name, and resuming
    it unpickles the name."""
    if name == "ThresholdStopper":
        from jobs.core.stoppers import ThresholdStopper

        return ThresholdStopper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def options(settings: Settings) -> StopOptions:
    assert isinstance(settings.options, StopOptions)
    return settings.options


def stopper(settings: Settings) -> ThresholdStopper | None:
    """The walkthrough's custom Stopper (jobs/core/stoppers.py: a `tune.Stopper`, imported
    when the stage runs), where a setting asks for it."""
    from jobs.core.stoppers import ThresholdStopper

    o = options(settings)
    if o.stop_all_at is None and o.stop_trial_worse_than is None and o.trial_time_limit_s is None:
        return None
    return ThresholdStopper(
        settings.metric,
        settings.mode,
        stop_all_at=o.stop_all_at,
        worse_than=o.stop_trial_worse_than,
        after=o.stop_trial_after,
        time_limit_s=o.trial_time_limit_s,
    )


def tuner(settings: Settings, plan: TrialPlan, trainable: Any) -> tune.Tuner:
    from ray import tune

    return tune.Tuner(
        trainable,  # the shared trial, reporting a checkpoint every epoch
        param_space=search_space(settings),  # lr ~ loguniform(1e-4, 1e-1), epochs, batch
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=settings.num_samples,
            search_alg=random_search(settings, plan),
            time_budget_s=options(settings).time_budget_s,
            reuse_actors=True,  # one process runs trial after trial (see jobs/tune.py)
        ),
        run_config=tune_run.run_config(
            settings,
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=KEEP_CHECKPOINTS,
                checkpoint_score_attribute=settings.metric,
                checkpoint_score_order=settings.mode,
            ),
            stop=stopper(settings),
        ),
    )


STAGE = Stage(
    name="checkpoint",
    part=4,
    defaults={"num_samples": 4, "num_epochs": 2},
    options=StopOptions,
    run=tune_run.TuneRun(
        tuner=tuner,
        checkpoints=True,
        after_fit=export_best_model,
    ),
    kubernetes=Kubernetes(deadline_s=3600),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
