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
from typing import Any

from ray import tune

from jobs.core import cli, tune_run
from jobs.core.export import export_best_model
from jobs.core.parsers import integer, optional, positive_float
from jobs.core.resources import TrialPlan
from jobs.core.search import random_search
from jobs.core.settings import Settings, setting
from jobs.core.stage import Kubernetes, Stage

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


class ThresholdStopper(tune.Stopper):
    """The walkthrough's custom Stopper, on the tuned metric, plus a per-trial time limit.

    A trial stops when, after `after` epochs, it is still worse than `worse_than`; the whole
    experiment stops once any trial reaches `stop_all_at`.
    """

    def __init__(
        self,
        metric: str,
        mode: str,
        *,
        stop_all_at: float | None,
        worse_than: float | None,
        after: int,
        time_limit_s: float | None,
    ) -> None:
        self.metric, self.mode = metric, mode
        self.stop_all_at, self.worse_than, self.after = stop_all_at, worse_than, after
        self.time_limit_s = time_limit_s
        self.reached = False

    def _worse(self, value: float, threshold: float) -> bool:
        return value > threshold if self.mode == "min" else value < threshold

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = result.get(self.metric)
        if value is None:
            return False
        if self.stop_all_at is not None and not self._worse(value, self.stop_all_at):
            self.reached = True
        if self.time_limit_s is not None and result.get("time_total_s", 0) >= self.time_limit_s:
            return True
        return (
            self.worse_than is not None
            and result.get("epoch", 0) > self.after
            and self._worse(value, self.worse_than)
        )

    def stop_all(self) -> bool:
        return self.reached


def options(settings: Settings) -> StopOptions:
    assert isinstance(settings.options, StopOptions)
    return settings.options


def stopper(settings: Settings) -> ThresholdStopper | None:
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


def tune_config(settings: Settings, plan: TrialPlan) -> tune.TuneConfig:
    config = random_search(settings, plan)
    config.time_budget_s = options(settings).time_budget_s
    return config


def run_config(settings: Settings) -> dict[str, Any]:
    return {
        "failure_config": tune.FailureConfig(max_failures=MAX_FAILURES),
        "checkpoint_config": tune.CheckpointConfig(
            num_to_keep=KEEP_CHECKPOINTS,
            checkpoint_score_attribute=settings.metric,
            checkpoint_score_order=settings.mode,
        ),
        "stop": stopper(settings),
    }


STAGE = Stage(
    name="checkpoint",
    part=4,
    defaults={"num_samples": 4, "num_epochs": 2},
    options=StopOptions,
    run=tune_run.TuneRun(
        tune_config=tune_config,
        run_config=run_config,
        checkpoints=True,
        after_fit=export_best_model,
    ),
    kubernetes=Kubernetes(deadline_s=3600),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
