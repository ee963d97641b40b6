"""Part 2 of the walkthrough: a first Tune experiment.

Random search (Tune's default BasicVariantGenerator) over lr ~ loguniform(1e-4, 1e-1),
4 trials of 3 epochs at batch 128, one GPU per trial on a GPU cluster. Prints the best
config and the per-trial table.
"""

from __future__ import annotations

import sys
from functools import partial

from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from jobs import cli, experiment
from jobs.config import Settings
from jobs.resources import TrialPlan


def lr_points(settings: Settings) -> list[dict[str, float]]:
    return [{"lr": lr} for lr in settings.lr_points]


def tune_config(settings: Settings, plan: TrialPlan) -> tune.TuneConfig:
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


STAGE = experiment.TuneStage("tune", tune_config)

if __name__ == "__main__":
    sys.exit(cli.main("tune", partial(experiment.run, STAGE), experiment.preflight))
