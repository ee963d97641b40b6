"""The walkthrough's search space and its random search (Part 2).

Shared by the stages that use it (tune, checkpoint, train); asha takes the learning rates
tried first (`lr_points`) from here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.core.resources import TrialPlan
from jobs.core.settings import Settings

if TYPE_CHECKING:  # Ray Tune is imported where it runs: a stage file imports without it
    from ray import tune

LR_RANGE = (1e-4, 1e-1)  # the walkthrough's tune.loguniform(1e-4, 1e-1)


def search_space(settings: Settings) -> dict[str, Any]:
    from ray import tune

    return {
        "lr": tune.loguniform(*LR_RANGE),
        "batch_size": settings.batch_size,
        "num_epochs": settings.num_epochs,
    }


def lr_points(settings: Settings) -> list[dict[str, float]]:
    """TUNE_LR_POINTS as points_to_evaluate: tried first, before the searcher samples."""
    return [{"lr": lr} for lr in settings.lr_points]


def random_search(settings: Settings, plan: TrialPlan) -> tune.TuneConfig:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return tune.TuneConfig(
        metric=settings.metric,
        mode=settings.mode,
        num_samples=settings.num_samples,
        # BasicVariantGenerator caps concurrency itself: Tune ignores max_concurrent_trials
        # for it (with a warning) instead of wrapping it in a ConcurrencyLimiter.
        search_alg=BasicVariantGenerator(
            points_to_evaluate=lr_points(settings),
            random_state=settings.seed,
            max_concurrent=plan.max_concurrent or 0,
        ),
    )
