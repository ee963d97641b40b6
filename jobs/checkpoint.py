"""Part 4 of the walkthrough: checkpointing and fault tolerance.

Every epoch the trial saves model, optimizer and epoch with `tune.report(...,
checkpoint=...)` and resumes from `tune.get_checkpoint()`; `FailureConfig(max_failures=2)`
retries a failed trial from its last checkpoint; the experiment lives on the shared path,
and running the stage again resumes it (see jobs.experiment). Options add the
walkthrough's custom Stopper, a per-trial time limit and an experiment time budget.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

from ray import tune

from jobs import cli, experiment
from jobs.config import Settings
from jobs.export import export_best_model
from jobs.resources import TrialPlan
from jobs.tune import tune_config as random_search

MAX_FAILURES = 2
# num_to_keep=1 also makes Tune snapshot the experiment after every trial checkpoint, so a
# killed driver loses at most the epoch in flight (the snapshot otherwise lags by >= 1 s).
KEEP_CHECKPOINTS = 1


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


def stopper(settings: Settings) -> ThresholdStopper | None:
    if (
        settings.stop_all_at is None
        and settings.stop_trial_worse_than is None
        and (settings.trial_time_limit_s is None)
    ):
        return None
    return ThresholdStopper(
        settings.metric,
        settings.mode,
        stop_all_at=settings.stop_all_at,
        worse_than=settings.stop_trial_worse_than,
        after=settings.stop_trial_after,
        time_limit_s=settings.trial_time_limit_s,
    )


def tune_config(settings: Settings, plan: TrialPlan) -> tune.TuneConfig:
    config = random_search(settings, plan)
    config.time_budget_s = settings.time_budget_s
    return config


def run_config(settings: Settings) -> dict[str, Any]:
    return {
        "failure_config": tune.FailureConfig(max_failures=MAX_FAILURES),
        "checkpoint_config": tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        "stop": stopper(settings),
    }


STAGE = experiment.TuneStage(
    "checkpoint",
    tune_config,
    trainable=partial(experiment.trial_trainable, checkpoint=True),
    run_config=run_config,
    after_fit=export_best_model,
)

if __name__ == "__main__":
    sys.exit(cli.main("checkpoint", partial(experiment.run, STAGE), experiment.preflight))
