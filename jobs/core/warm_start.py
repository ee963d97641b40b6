"""WARM_START: a new Optuna search that starts from what an earlier run learned.

The earlier run's trials join the new Optuna study as already evaluated (they do not run
again): a trial that ran all its epochs as COMPLETE with its metric at its last epoch; a trial
ASHA stopped early as PRUNED, with its metric per epoch as intermediate values, which is what
Optuna records for a trial its own pruner stops (TPE ranks pruned trials below completed
ones, by how far they got); an errored trial not at all. TUNE_LR_POINTS still run first, as
new trials; TPE then samples from the earlier trials and the new ones together.

The earlier run must have tuned the same metric over the same space (lr within the
walkthrough's range, the same batch_size and num_epochs): otherwise its values mean something
else, and the run stops with one error line before anything is written. Reading it needs no
Ray: the check runs on the workstation too.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.core import runs
from jobs.core.parsers import ConfigError
from jobs.core.search import LR_RANGE
from jobs.core.settings import Settings
from jobs.core.training_spec import HYPERPARAMETERS, hyperparameters

SEARCHED = ("lr",)  # what the search samples; the other hyperparameters are fixed


@dataclass(frozen=True)
class Evaluated:
    """One earlier trial as Optuna takes it (OptunaSearch.add_evaluated_point)."""

    trial_id: str
    params: dict[str, float]
    value: float
    pruned: bool
    intermediate: tuple[float, ...] = ()


def _fixed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: config.get(k) for k in HYPERPARAMETERS if k not in SEARCHED}


@functools.cache
def _load(folder: str, metric: str, mode: str, fixed: tuple[tuple[str, Any], ...]) -> tuple:
    path = Path(folder)
    if not runs.is_run(path):
        raise ConfigError(
            f"WARM_START: no run at {folder} (a stage's folder, an archived one or a "
            "results/k8s copy, holding results.json or Tune's trials)"
        )
    run = runs.read(path)
    summary = run.summary
    if run.finished and (summary.metric, summary.mode) != (metric, mode):
        raise ConfigError(
            f"WARM_START: {folder} ranked its trials on {summary.metric} ({summary.mode}); "
            f"this search tunes {metric} ({mode}): its values would mean something else"
        )
    wanted = dict(fixed)
    found: list[Evaluated] = []
    for trial in summary.trials:
        config = trial.config
        if set(config) != set(HYPERPARAMETERS) or _fixed(config) != wanted:
            raise ConfigError(
                f"WARM_START: {folder} searched another space: trial {trial.trial_id} has "
                f"{ {k: config.get(k) for k in sorted(config)} }, this search fixes {wanted} "
                f"and samples lr in [{LR_RANGE[0]:g}, {LR_RANGE[1]:g}]"
            )
        lr = config["lr"]
        if not (isinstance(lr, int | float) and LR_RANGE[0] <= lr <= LR_RANGE[1]):
            raise ConfigError(
                f"WARM_START: {folder} tried lr={lr} (trial {trial.trial_id}), outside this "
                f"search's [{LR_RANGE[0]:g}, {LR_RANGE[1]:g}]"
            )
        value = trial.metrics.get(metric)
        if trial.status == "errored" or not isinstance(value, int | float):
            continue
        history = run.histories.get(trial.trial_id, [])
        steps = tuple(float(r[metric]) for r in history if isinstance(r.get(metric), int | float))
        found.append(
            Evaluated(
                trial.trial_id,
                {"lr": float(lr)},
                float(value),
                pruned=trial.status == "early_stopped",
                intermediate=steps,
            )
        )
    if not found:
        raise ConfigError(f"WARM_START: {folder} has no trial that reported {metric}")
    return tuple(found)


def earlier_trials(settings: Settings) -> list[Evaluated]:
    """WARM_START's trials as evaluated points; none without it. Read once per process: a
    `--fresh` that archives the folder it names still finds them (read at the preflight)."""
    if settings.warm_start is None:
        return []
    fixed = tuple(sorted(_fixed(hyperparameters(settings)).items()))
    return list(_load(settings.warm_start, settings.metric, settings.mode, fixed))


MARKER = "warm_start.json"  # in the experiment: the run it started from


def started_from(settings: Settings) -> str | None:
    """The WARM_START the experiment in the stage's folder started from, if any."""
    try:
        return str(json.loads((settings.experiment_dir / MARKER).read_text())["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(settings: Settings) -> None:
    """Note in a fresh experiment which run it starts from (a retry resumes it as is)."""
    settings.experiment_dir.mkdir(parents=True, exist_ok=True)
    (settings.experiment_dir / MARKER).write_text(json.dumps({"source": settings.warm_start}))


def check(settings: Settings, *, takes_it: bool, resuming: bool) -> None:
    """The preflight: a stage whose searcher takes no evaluated points refuses WARM_START, so
    does a resume (its searcher state is the original run's), but for the experiment that
    started from that same run (a KubeRay retry of it keeps its environment and resumes it,
    its study already holding the earlier trials); the run it names must fit."""
    if settings.warm_start is None:
        return
    if not takes_it:
        raise ConfigError(
            f"WARM_START: the {settings.stage} stage searches at random "
            "(BasicVariantGenerator), which learns nothing from earlier results; "
            "use it with asha (Optuna)"
        )
    if resuming and not settings.resume and started_from(settings) == settings.warm_start:
        return
    if resuming:
        raise ConfigError(
            f"WARM_START applies to a fresh experiment only: {settings.experiment_dir} holds "
            "one this run would resume (add --fresh to archive it, or unset WARM_START)"
        )
    earlier_trials(settings)


def summary_line(found: list[Evaluated], source: str) -> str:
    done = sum(not e.pruned for e in found)
    return (
        f"[experiment] WARM_START: the search starts from {len(found)} trials of {source} "
        f"({done} completed, {len(found) - done} stopped early, as pruned)"
    )
