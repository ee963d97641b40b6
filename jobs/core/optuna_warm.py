"""OptunaSearch that starts from earlier trials (WARM_START, jobs.core.warm_start).

Ray's own `evaluated_rewards` takes values for `points_to_evaluate` only, all or none, so it
cannot both seed the study with finished trials and keep TUNE_LR_POINTS as new ones to run
first. This subclass adds the earlier trials once its study exists (when Tune hands it the
search space), through OptunaSearch's public `add_evaluated_point`, which also records a
pruned trial with its intermediate values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from jobs.core.warm_start import Evaluated


class WarmStartedOptunaSearch(OptunaSearch):
    """OptunaSearch; with `earlier` trials, its TPE seed moves on by their number: TPE samples
    at random for its first 10 trials, from its seed, so a study seeded as the earlier run
    was would propose the earlier run's first learning rates again (measured: 2 of 3)."""

    def __init__(self, *args: Any, earlier: Sequence[Evaluated] = (), **kwargs: Any) -> None:
        if earlier and kwargs.get("seed") is not None:
            kwargs["seed"] += len(earlier)
        self._earlier = list(earlier)  # before: a search space given here sets up the study
        super().__init__(*args, **kwargs)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        for trial in self._earlier:
            self.add_evaluated_point(
                trial.params,
                trial.value,
                pruned=trial.pruned,
                intermediate_values=list(trial.intermediate) or None,
            )
        self._earlier = []  # in the study now, and in its saved state (a restore)
