"""The walkthrough's search space, and the searchers' first points (Parts 2 and 3).

Shared by every Tune stage: `search_space` is the `param_space` each stage's Tuner gets,
`random_search` the seeded random search of tune, checkpoint and train, and `lr_points`
what TUNE_LR_POINTS asks to try first (asha hands them to Optuna).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.core.resources import TrialPlan
from jobs.core.settings import Settings
from jobs.core.training_spec import hyperparameters

if TYPE_CHECKING:  # Ray Tune is imported where it runs: a stage file imports without it
    from ray.tune.search.basic_variant import BasicVariantGenerator

LR_RANGE = (1e-4, 1e-1)  # the walkthrough's tune.loguniform(1e-4, 1e-1)


def search_space(settings: Settings) -> dict[str, Any]:
    """The walkthrough's param_space: num_epochs and batch_size fixed from the settings, lr
    sampled on a log scale. Its keys are jobs.core.training_spec.HYPERPARAMETERS, all of them:
    the trial reads its hyperparameters from its config and nowhere else."""
    from ray import tune

    return {**hyperparameters(settings), "lr": tune.loguniform(*LR_RANGE)}


def lr_points(settings: Settings) -> list[dict[str, float]]:
    """TUNE_LR_POINTS as points_to_evaluate: tried first, before the searcher samples."""
    return [{"lr": lr} for lr in settings.lr_points]


def random_search(settings: Settings, plan: TrialPlan) -> BasicVariantGenerator:
    """Tune's default searcher (random sampling of param_space), seeded with SEED, starting
    from TUNE_LR_POINTS, at most the plan's concurrent trials."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(
        points_to_evaluate=lr_points(settings),
        random_state=settings.seed,
        # BasicVariantGenerator caps concurrency itself: Tune ignores max_concurrent_trials
        # for it (with a warning) instead of wrapping it in a ConcurrencyLimiter.
        max_concurrent=plan.max_concurrent or 0,
    )
