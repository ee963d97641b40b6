"""A stage's runs as the volume keeps them, read back for the report and `make compare`.

A run is an experiment folder: `<STORAGE_PATH>/<stage>` (the current run), a
`<stage>.archived-<time>` beside it (a run `--fresh` or a baseline rerun moved aside), or a
folder `make results TARGET=k8s` copied. Its summary is results.json; an attempt that died
before writing one leaves the trials Tune saved (each trial folder's `result.json` rows), so
a failed run is read from those. Its attempts are `<stage>.logs/` (or `logs/` inside an
archived or copied folder), its curves `curves.json` (written by jobs.core.outputs).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.core import attempts, records

CURVES_FILE = "curves.json"  # every trial's per-epoch rows and the scheduler's rungs
ARCHIVED = ".archived-"
# A Tune trial folder: <trainable>_<trial id>_<index proposed>_<params>_<date> (Ray 2.60's
# trial ids are 8 hex digits; older ones 5 hex digits and a 5-digit counter).
TRIAL_FOLDER = re.compile(r"_(?P<id>[0-9a-f]{8}|[0-9a-f]{5}_\d{5})_(?P<order>\d+)(?:_|$)")
# The line a failed driver ends with: our one `error:` line, or Python's exception line.
FAILURE_LINE = re.compile(r"^(error: .+|[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*)$")
LOG_TAIL = 64 * 1024  # the end of a driver log, where its failure line is
REFUSED = 2  # an attempt refused before it ran (bad input, the experiment in use)
# An attempt without an exit code whose record was updated this recently is still running
# (its driver samples its nodes every attempts.NODE_SAMPLE_S).
RUNNING_S = 12 * attempts.NODE_SAMPLE_S


@dataclass(frozen=True)
class Attempt:
    files: attempts.AttemptFiles
    record: attempts.Record | None

    @property
    def running(self) -> bool:
        rec = self.record
        return rec is not None and rec.exit_code is None and time.time() - rec.updated < RUNNING_S

    @property
    def failure(self) -> str | None:
        """Why the attempt failed, in one line; None when it exited 0 or still runs."""
        if self.running or (self.record is not None and self.record.exit_code == 0):
            return None
        if self.record is None or self.record.exit_code is None:
            ended = "did not finish (killed, or its cluster deleted)"
        else:
            ended = f"exit {self.record.exit_code}"
        why = last_error(self.files.log)
        return f"{ended}: {why}" if why else ended


@dataclass
class Run:
    folder: Path
    summary: records.Summary
    finished: bool  # results.json written: the stage's run reached its end
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rungs: tuple[int, ...] = ()
    order: dict[str, int] = field(default_factory=dict)  # trial id -> index proposed
    attempts: list[Attempt] = field(default_factory=list)
    trial_folders: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def stage(self) -> str:
        return self.summary.stage

    @property
    def outcome(self) -> Attempt | None:
        """The attempt that decided the run: the last one not refused before it ran (a run
        refused on the experiment's lock says nothing of the one that held it)."""
        ran = [a for a in self.attempts if a.record is None or a.record.exit_code != REFUSED]
        return (ran or self.attempts or [None])[-1]

    @property
    def failure(self) -> str | None:
        """The deciding attempt's failure, when it failed."""
        return self.outcome.failure if self.outcome is not None else None

    @property
    def status(self) -> str:
        counts = self.summary.counts
        if self.outcome is not None and self.outcome.running:
            return "running"
        if self.finished and self.failure is None:
            errored = counts["errored"]
            return "finished" + (f", {errored} trial(s) errored" if errored else "")
        if self.failure is not None:
            return f"failed: {self.failure}"
        return "unfinished: no attempt has ended (running, or killed)"

    @property
    def started(self) -> float | None:
        times = [a.record.started for a in self.attempts if a.record is not None]
        return min(times) if times else None


def last_error(log: Path) -> str | None:
    """The last failure line of a driver log (`error: ...` or an exception), if any."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - LOG_TAIL))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if FAILURE_LINE.match(line.strip()):
            text = line.strip()
            return text if len(text) <= 300 else text[:297] + "..."
    return None


def attempts_folder(folder: Path) -> Path:
    """Where a run's attempt logs are: `<stage>.logs` beside it, or `logs/` inside it."""
    inside = folder / "logs"
    return inside if inside.is_dir() else attempts.logs_dir(folder)


def trial_folders(folder: Path) -> dict[str, Path]:
    """Tune's trial folders in an experiment folder, by trial id."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        match = TRIAL_FOLDER.search(path.name)
        if path.is_dir() and match:
            found[match.group("id")] = path
    return found


def _rows(path: Path) -> list[dict[str, Any]]:
    """A trial folder's result.json: one JSON object per reported result."""
    rows = []
    try:
        text = (path / "result.json").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a killed driver
    return rows


def _history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_epoch = {int(r["epoch"]): r for r in rows if isinstance(r.get("epoch"), int | float)}
    keep = ("epoch", "loss", "val_loss", "val_accuracy")
    return [{k: by_epoch[e][k] for k in keep if k in by_epoch[e]} for e in sorted(by_epoch)]


def from_trial_folders(folder: Path, stage: str) -> tuple[records.Summary, dict]:
    """What Tune saved of an unfinished run: each trial's config and last metrics."""
    trials, histories = [], {}
    for trial_id, path in trial_folders(folder).items():
        rows = _rows(path)
        try:
            config = json.loads((path / "params.json").read_text())
        except (OSError, ValueError):
            config = rows[-1].get("config", {}) if rows else {}
        history = _history(rows)
        # An error.txt older than the trial's last result is one a retry got past.
        errored = _newer(path / "error.txt", path / "result.json")
        error = (path / "error.txt").read_text(errors="replace") if errored else None
        planned = int(config.get("num_epochs", 0) or 0)
        last = rows[-1] if rows else {}
        trials.append(records.record(trial_id, errored, planned, config, last, history, error))
        histories[trial_id] = history
    metric, mode = "val_loss", "min"
    return records.Summary(stage, metric, mode, trials, 0.0), histories


def _newer(path: Path, than: Path) -> bool:
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return False
    try:
        return mtime >= than.stat().st_mtime
    except OSError:
        return True


def stage_of(folder: Path) -> str:
    return folder.name.split(ARCHIVED, 1)[0]


def read(folder: Path) -> Run:
    """The run in an experiment folder, finished or not."""
    found = trial_folders(folder)
    results = folder / records.RESULTS_FILE
    curves: dict[str, Any] = {}
    if (folder / CURVES_FILE).is_file():
        curves = json.loads((folder / CURVES_FILE).read_text())
    if results.is_file():
        summary, finished = records.load(results), True
        # A run from before curves.json: the trials' own rows.
        histories = curves.get("trials") or {i: _history(_rows(p)) for i, p in found.items()}
    else:
        summary, histories = from_trial_folders(folder, stage_of(folder))
        finished = False
    order = {
        trial_id: int(match.group("order"))
        for trial_id, path in found.items()
        if (match := TRIAL_FOLDER.search(path.name))
    }
    runs = [
        Attempt(files, attempts.read_record(files))
        for files in attempts.attempts(attempts_folder(folder))
    ]
    return Run(
        folder,
        summary,
        finished,
        histories={k: list(v) for k, v in histories.items()},
        rungs=tuple(curves.get("rungs") or ()),
        order=order,
        attempts=runs,
        trial_folders=found,
    )


REPORT_FILE = "report.html"  # jobs.core.report writes it; a failed attempt's run has one


def is_run(folder: Path) -> bool:
    """A run's folder: results, Tune's trials, or the report of an attempt that failed."""
    return folder.is_dir() and any(
        (
            (folder / records.RESULTS_FILE).is_file(),
            (folder / REPORT_FILE).is_file(),
            bool(trial_folders(folder)),
        )
    )


def runs_of(root: Path, stage: str) -> list[Path]:
    """A stage's runs under a storage root, oldest first: the archived ones, then the current."""
    archived = sorted(p for p in root.glob(f"{stage}{ARCHIVED}*") if is_run(p))
    current = root / stage
    return [*archived, *([current] if is_run(current) else [])]


def previous(folder: Path) -> Path | None:
    """The run before this one: the newest archived run of its stage beside it (older than
    it, when it is itself an archived run)."""
    stage = stage_of(folder)
    archived = [p for p in runs_of(folder.parent, stage) if p.name != stage]
    if folder.name != stage:
        archived = [p for p in archived if p.name < folder.name]
    archived = [p for p in archived if p != folder]
    return archived[-1] if archived else None
