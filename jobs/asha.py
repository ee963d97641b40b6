"""Part 3 of the walkthrough: smarter search and early stopping.

Optuna's TPE sampler proposes learning rates from the results so far; ASHA stops trials
whose validation loss trails the others at each rung. Rungs are counted in epochs (the
`epoch` metric), not in Tune's training_iteration, which restarts after a trial retry.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from jobs.core import cli, tune_run
from jobs.core.resources import TrialPlan
from jobs.core.search import lr_points, search_space
from jobs.core.settings import Settings
from jobs.core.stage import Kubernetes, Stage
from jobs.core.warm_start import earlier_trials

if TYPE_CHECKING:
    from ray import tune

MAX_T = 10  # the walkthrough's ASHAScheduler(max_t=10, grace_period=2)
GRACE_PERIOD = 2
REDUCTION_FACTOR = 4  # ASHAScheduler's default


def scheduler_max_t(settings: Settings) -> int:
    """The walkthrough's max_t, raised to the epoch budget: ASHA stops every trial at max_t."""
    return max(MAX_T, settings.num_epochs)


def tuner(settings: Settings, plan: TrialPlan, trainable: Any) -> tune.Tuner:
    # Ray Tune, Optuna and the scheduler are imported when the stage runs, not when its
    # declaration is read (a workstation's client venv has none of them).
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from jobs.core.optuna_warm import WarmStartedOptunaSearch

    return tune.Tuner(
        trainable,  # the shared trial, with one trial's resources from the plan
        param_space=search_space(settings),  # lr ~ loguniform(1e-4, 1e-1), epochs, batch
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            num_samples=settings.num_samples,
            # OptunaSearch (TPE), which also starts from WARM_START's trials when set.
            search_alg=WarmStartedOptunaSearch(
                points_to_evaluate=lr_points(settings) or None,
                seed=settings.seed,
                earlier=earlier_trials(settings),
            ),
            scheduler=ASHAScheduler(
                time_attr="epoch",
                max_t=scheduler_max_t(settings),
                grace_period=GRACE_PERIOD,
                reduction_factor=REDUCTION_FACTOR,
            ),
            max_concurrent_trials=plan.max_concurrent,
            # One process runs trial after trial: torch imported and the data decoded once.
            reuse_actors=True,
        ),
        run_config=tune_run.run_config(settings),
    )


def rungs(
    max_t: int = MAX_T,
    grace: int = GRACE_PERIOD,
    factor: int = REDUCTION_FACTOR,
) -> tuple[int, ...]:
    """The epochs where ASHA compares trials: grace * factor^k below max_t."""
    out, milestone = [], grace
    while milestone < max_t:
        out.append(milestone)
        milestone *= factor
    return tuple(out)


STAGE = Stage(
    name="asha",
    part=3,
    defaults={"num_samples": 4, "num_epochs": 8},
    run=tune_run.TuneRun(
        tuner=tuner,
        rungs=lambda s: tuple(r for r in rungs(scheduler_max_t(s)) if r <= s.num_epochs),
        note_on_resume="Tuner.restore does not restore ASHA's rung records (ray#30838): "
        "resumed trials are judged against the rungs of this run only",
        # Optuna knows trials by id: an errored trial runs again under its own id.
        errored="resume",
        warm_start=True,
    ),
    # 8 epochs per trial, and Optuna runs trials more sequentially than random search.
    kubernetes=Kubernetes(deadline_s=7200),
)

if __name__ == "__main__":
    sys.exit(cli.main(STAGE))
