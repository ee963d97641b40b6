"""The walkthrough's custom Stopper (Part 4), on the tuned metric, with a per-trial time limit.

Its own module because it subclasses `tune.Stopper`: jobs/checkpoint.py builds it when the
stage runs, so reading the stage's declaration needs no Ray Tune.
"""

from __future__ import annotations

from typing import Any

from ray import tune


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
