"""Part 2 of the walkthrough: a first Tune experiment.

Random search (Tune's default BasicVariantGenerator) over lr ~ loguniform(1e-4, 1e-1),
4 trials of 3 epochs at batch 128, one GPU per trial on a GPU cluster. Prints the best
trial's config and metrics and the per-trial table.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from jobs.core import cli, tune_run
from jobs.core.resources import TrialPlan
from jobs.core.search import random_search, search_space
from jobs.core.settings import Settings
from jobs.core.stage import Kubernetes, Stage

if TYPE_CHECKING:
    from ray import tune


def tuner(settings: Settings, plan: TrialPlan, trainable: Any) -> tune.Tuner:
    # Ray Tune is imported when the stage runs, not when its declaration is read (a
    # workstation's client venv has none of it).
    from ray import tune

    return tune.Tuner(
        trainable,  # the shared trial, with one trial's resources from the plan
        param_space=search_space(settings),  # lr ~ loguniform(1e-4, 1e-1), epochs, batch
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=settings.num_samples,
            search_alg=random_search(settings, plan),
            # One process runs trial after trial: torch imported and the data decoded once,
            # not once per trial (~5 s a trial on 2 cores); each trial keeps its own folder.
            reuse_actors=True,
        ),
        run_config=tune_run.run_config(settings),
    )


STAGE = Stage(
    name="tune",
    part=2,
    defaults={"num_samples": 4, "num_epochs": 3},
    run=tune_run.TuneRun(tuner=tuner),
    kubernetes=Kubernetes(deadline_s=3600),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
