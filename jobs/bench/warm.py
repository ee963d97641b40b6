"""Bench section: trials until an earlier run's best is matched, with and without WARM_START.

Three Optuna searches over the walkthrough's lr range, each trial trained EPOCHS epochs on
the search size (no pruning, so every trial's value is its last epoch's), in one run:
  earlier: EARLIER trials from seed 0, as a first asha run would;
  cold:    a new search from seed 1 (what a second run without WARM_START is);
  warm:    a new search from seed 0 that starts from the earlier trials, through the class the
           asha stage uses (jobs.core.optuna_warm.WarmStartedOptunaSearch).
Each new search runs up to LIMIT trials; the figure is the first trial whose val_loss is within
compare.NOISE_BAND of the earlier best (None: not within LIMIT). No Ray cluster: the
searchers' own suggest/complete calls, as Tune makes them.
"""

from __future__ import annotations

import time
from typing import Any

from jobs.core.compare import NOISE_BAND
from jobs.core.search import LR_RANGE
from jobs.core.warm_start import Evaluated

EARLIER = 6
LIMIT = 6
EPOCHS = 3


def _searcher(seed: int, earlier: list[Evaluated]) -> Any:
    from ray import tune

    from jobs.core.optuna_warm import WarmStartedOptunaSearch

    return WarmStartedOptunaSearch(
        space={"lr": tune.loguniform(*LR_RANGE)},
        metric="val_loss",
        mode="min",
        seed=seed,
        earlier=earlier,
    )


def _search(searcher: Any, trials: int, train: Any) -> list[tuple[float, float]]:
    """(lr, last val_loss) of each trial, in the order proposed."""
    out = []
    for n in range(trials):
        config = searcher.suggest(f"t{n}")
        value = train(float(config["lr"]))
        searcher.on_trial_complete(f"t{n}", {"val_loss": value})
        out.append((float(config["lr"]), value))
    return out


def trials_to_match(train: Any) -> dict[str, Any]:
    """`train(lr) -> val_loss after EPOCHS epochs`; the section's keys."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    earlier = _search(_searcher(0, []), EARLIER, train)
    best = min(v for _, v in earlier)
    target = best * (1 + NOISE_BAND)
    points = [Evaluated(f"e{i}", {"lr": lr}, v, pruned=False) for i, (lr, v) in enumerate(earlier)]

    def first_match(found: list[tuple[float, float]]) -> int | None:
        return next((i + 1 for i, (_, v) in enumerate(found) if v <= target), None)

    cold = _search(_searcher(1, []), LIMIT, train)
    warm = _search(_searcher(0, points), LIMIT, train)
    return {
        "warm_start_earlier_trials": EARLIER,
        "warm_start_earlier_best_val_loss": round(best, 4),
        "warm_start_trials_to_match_cold": first_match(cold),
        "warm_start_trials_to_match_warm": first_match(warm),
        "warm_start_best_cold": round(min(v for _, v in cold), 4),
        "warm_start_best_warm": round(min(v for _, v in warm), 4),
        "warm_start_limit": LIMIT,
        "warm_start_wall_s": round(time.perf_counter() - started, 1),
    }
