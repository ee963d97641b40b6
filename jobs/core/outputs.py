"""What every stage leaves in `<STORAGE_PATH>/<stage>` and prints at its end.

`finish` writes results.json, results.csv, curves.json (the per-epoch rows) and
learning_curves.png and prints the leaderboard,
the compute used and its cost; `archive` moves a previous run's folder aside rather than
overwriting it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jobs.core import attempts, cost, plots, records, runs
from jobs.core.resources import TrialPlan
from jobs.core.settings import Settings


def archive(path: Path) -> Path:
    """Move an experiment folder aside as <name>.archived-<time>, with the logs of the
    attempts that started before its last write in its `logs/`; nothing is deleted."""
    summary = path / records.RESULTS_FILE  # written last; else the folder's last change
    written = (summary if summary.exists() else path).stat().st_mtime
    # UTC: archived runs sort by name in the order they were made, wherever and whenever.
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.archived-{stamp}")
    n = 1
    while target.exists():  # two archives within a second
        target = target.with_name(f"{path.name}.archived-{stamp}-{n}")
        n += 1
    path.rename(target)
    attempts.move_previous(attempts.logs_dir(path), target / "logs", before=written)
    try:  # its report again: its logs moved into it
        from jobs.core import report

        report.write(target)
    except Exception as err:  # the archive is made; a stale report costs a warning only
        print(f"[experiment] warning: the archived run's report is not redrawn: {err!r}")
    return target


def finish(
    settings: Settings,
    summary: records.Summary,
    histories: dict[str, records.History],
    plan: TrialPlan,
    rungs: tuple[int, ...] = (),
    extra: list[Path] | None = None,
    retried: dict[str, Any] | None = None,
) -> None:
    """What every stage leaves and prints: the compute used, results.json, results.csv and
    learning_curves.png; the table, the best trial, and the files written (with `extra`)."""
    folder = settings.experiment_dir
    running = attempts.current()
    if running is not None:
        running.sample()  # this attempt's nodes up to now, beside the earlier attempts'
    summary.compute = records.compute_used(
        summary,
        plan.device,
        plan.device_units(),
        accelerator=cost.accelerator_key(plan.use_gpu, settings.accelerator_type),
        nodes=attempts.node_hours(attempts.logs_dir(folder)) if running is not None else None,
        prices=settings.node_prices,
        retries=retried,
    )
    curves = {"rungs": list(rungs), "trials": {k: list(v) for k, v in histories.items()}}
    written = [
        *records.write(folder, summary),
        records.atomic_write(folder / runs.CURVES_FILE, json.dumps(curves, default=float) + "\n"),
        plots.plot_curves(folder / plots.CURVES_FILE, summary, histories, rungs),
        *(extra or []),
    ]
    print(records.leaderboard(summary), flush=True)
    print(records.best_report(summary), flush=True)
    for line in cost.report_lines(summary.compute):
        print(f"[{settings.stage}] {line}", flush=True)
    print(f"[{settings.stage}] summary: {json.dumps(records.stage_line(summary))}", flush=True)
    for item in written:
        print(f"[{settings.stage}] wrote {item}", flush=True)
