"""The experiment report: what a person opens once the RayJob's cluster is gone.

`write(folder)` writes `report.html` into a run's folder on the volume: one self-contained
file (charts as inline SVG, styles and the table sorter inline, nothing fetched when viewed)
with the best trial as the walkthrough prints it, the leaderboard, the learning curves with
ASHA's rungs and early stops, the search, the attempts on a timeline with their nodes, the
cost lines, the run before this one side by side (jobs.core.compare), and links to each
attempt's driver log and each trial's logs. `write_index(root)` writes `index.html` at the
storage root: every run of every stage, archived ones included. Both are written by every
stage after every attempt (jobs.core.cli), finished or failed, and again by `make report`;
each file is replaced in one rename, so two stages finishing at once leave a whole index.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from jobs.core import charts, compare, cost, records, runs
from jobs.core.report_page import INDEX, REPORT

REPORT_FILE = runs.REPORT_FILE
INDEX_FILE = "index.html"
# Tune's per-trial files worth a link (log_to_file=True writes stdout and stderr).
TRIAL_LOGS = ("stdout", "stderr", "error.txt")


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda v: "-" if v is None else f"{v:.4g}" if isinstance(v, float) else v
    env.filters["when"] = lambda t: (
        "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
    )
    return env


def _link(base: Path, target: Path) -> str:
    return Path(os.path.relpath(target, base)).as_posix()


def _attempt_rows(run: runs.Run) -> list[dict[str, Any]]:
    rows = []
    for number, attempt in enumerate(run.attempts, 1):
        rec = attempt.record
        rows.append(
            {
                "number": number,
                "name": attempt.files.name,
                "started": None if rec is None else rec.started,
                "seconds": None if rec is None else max(0.0, rec.updated - rec.started),
                "ended": attempt.failure or "exit 0",
                "ok": attempt.failure is None,
                "nodes": "-"
                if rec is None
                else cost.hours_text(rec.node_hours(), empty="-") + " node-hours",
                "left": 0 if rec is None else len(rec.left),
                "log": _link(run.folder, attempt.files.log),
            }
        )
    return rows


def _trial_links(run: runs.Run) -> dict[str, list[tuple[str, str]]]:
    links: dict[str, list[tuple[str, str]]] = {}
    for trial_id, folder in run.trial_folders.items():
        links[trial_id] = [
            (name, _link(run.folder, folder / name))
            for name in TRIAL_LOGS
            if (folder / name).is_file()
        ]
    return links


def render(run: runs.Run, previous: runs.Run | None = None) -> str:
    """The report of one run (with `previous`, the run before it side by side)."""
    summary = run.summary
    compared = None
    if previous is not None:
        compared = {
            "other": previous.name,
            "other_link": _link(run.folder, previous.folder / REPORT_FILE),
            "lines": compare.compare(run, previous),
            "band": f"{compare.NOISE_BAND:.0%}",
        }
    best = summary.best
    return (
        _env()
        .from_string(REPORT)
        .render(
            run=run,
            summary=summary,
            best_text=records.best_report(summary) if best is not None else None,
            columns=records.COLUMNS,
            rows=records.rows(summary),
            curves=charts.curves(run) if run.histories else None,
            search=charts.search(run),
            timeline=charts.timeline(run),
            attempts=_attempt_rows(run),
            cost_lines=cost.report_lines(summary.compute),
            trial_links=_trial_links(run),
            compared=compared,
            index_link=_link(run.folder, run.folder.parent / INDEX_FILE),
            generated=time.time(),
        )
    )


def write(folder: Path) -> Path:
    """report.html in the run's folder, from what the folder holds now."""
    run = runs.read(folder)
    before = runs.previous(folder)
    previous = runs.read(before) if before is not None else None
    return records.atomic_write(folder / REPORT_FILE, render(run, previous))


def index_rows(root: Path) -> list[dict[str, Any]]:
    from jobs import registry

    rows = []
    stages = registry.names()
    found = {runs.stage_of(p) for p in root.iterdir() if runs.is_run(p)} if root.is_dir() else set()
    for stage in [*stages, *sorted(found - set(stages))]:
        for folder in reversed(runs.runs_of(root, stage)):  # newest first
            run = runs.read(folder)
            s = run.summary
            best = s.best
            compute = s.compute
            money = compute.get("cost") or {}
            rows.append(
                {
                    "stage": stage,
                    "name": folder.name,
                    "report": _link(root, folder / REPORT_FILE),
                    "has_report": (folder / REPORT_FILE).is_file(),
                    "status": run.status,
                    "ok": run.failure is None and run.finished,
                    "started": run.started,
                    "trials": len(s.trials),
                    "best": None if best is None else best.metrics.get(s.metric),
                    "metric": s.metric,
                    "wall": s.wall_time_s if run.finished else None,
                    "hours": cost.hours_text(compute.get("accelerator_hours") or {}, empty="-"),
                    "on_demand": cost.usd(money.get("on_demand_usd")) or "-",
                    "spot": cost.usd(money.get("spot_usd")) or "-",
                }
            )
    return rows


def write_index(root: Path) -> Path:
    """index.html at the storage root: every run of every stage, newest first per stage."""
    rows = index_rows(root)
    page = _env().from_string(INDEX).render(rows=rows, root=str(root), generated=time.time())
    return records.atomic_write(root / INDEX_FILE, page)


def refresh(folder: Path) -> list[Path]:
    """The run's report and the storage root's index (after an attempt, and `make report`)."""
    written = []
    if runs.is_run(folder) or runs.attempts_folder(folder).is_dir():
        written.append(write(folder))
    written.append(write_index(folder.parent))
    return written
