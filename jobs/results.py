"""`python -m jobs.results SOURCE... [--format table|json|csv]`: a stored run's leaderboard.

SOURCE is a stage name (its experiment under STORAGE_PATH, as `make results` passes it),
results.json or the experiment folder holding it, or `-` to read results.json from stdin.
`all` (or several sources) prints one line per stage instead: trials, best metric, time,
accelerator-hours and cost (`make results STAGE=all`), then each stage's compute and cost.
`--folder` prints the experiment folder instead (`make tensorboard`).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

from jobs import registry, smoke
from jobs.core import attempts, cost, records
from jobs.core.parsers import ConfigError
from jobs.core.reading import Parser
from jobs.core.settings import experiment_dir

FORMATS = ("table", "json", "csv")
ALL = "all"


def _path(source: str) -> str:
    """A stage's experiment folder, or the source as given."""
    if registry.named_stage(source):
        return str(experiment_dir(source, os.environ))
    return source


def _has_results(source: str) -> bool:
    path = Path(source)
    return (path / records.RESULTS_FILE).is_file() if path.is_dir() else path.is_file()


def _read(source: str, label: str) -> records.Summary:
    try:
        if source == "-":
            return records.Summary.from_dict(json.loads(sys.stdin.read()))
        return records.load(Path(source))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"cannot read results from {label}: {err}") from None


def logs_note(source: str, stage: str) -> str | None:
    """Where the stage's attempt logs are (`make logs`), when there are any."""
    if source == "-":
        return None
    folder = Path(source if Path(source).is_dir() else Path(source).parent).absolute()
    for candidate in (attempts.logs_dir(folder), folder / "logs"):
        found = attempts.attempts(candidate)
        if found:
            return (
                f"logs: {len(found)} attempt(s) in {candidate}; make logs STAGE={stage} "
                "[ATTEMPT=n] prints one"
            )
    return None


def print_all(sources: list[str], fmt: str) -> int:
    summaries = [_read(_path(s), s) for s in sources]
    lines = [records.stage_line(s) for s in summaries]
    if fmt == "json":
        print(json.dumps(lines, indent=2))
        return 0
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(lines[0])
        for line in lines:  # accelerator_hours, a mapping, as JSON in its cell
            writer.writerow(
                "" if v is None else json.dumps(v) if isinstance(v, dict) else v
                for v in line.values()
            )
        return 0
    print(records.summary_table(lines))
    for summary in summaries:
        for line in cost.report_lines(summary.compute):
            print(f"[{summary.stage}] {line}")
    return 0


def _smoke_file(source: str) -> Path | None:
    """The smoke check's smoke.json that SOURCE names (`smoke`, its folder or the file)."""
    if source == smoke.NAME:
        report = experiment_dir(smoke.NAME, os.environ) / smoke.REPORT_FILE
        if not report.is_file():
            raise ConfigError(f"no smoke check results at {report} (make smoke writes them)")
        return report
    path = Path(source)
    if path.is_dir():  # a folder make results TARGET=k8s copied: a stage's or the smoke's
        report = path / smoke.REPORT_FILE
        return report if report.is_file() and not _has_results(source) else None
    return path if path.name == smoke.REPORT_FILE and path.is_file() else None


def print_smoke(path: Path, fmt: str) -> int:
    """The smoke check's table (make results STAGE=smoke), or its JSON as written."""
    try:
        data = json.loads(path.read_text())
        report = smoke.Report(
            data["accelerator_type"],
            data["started"],
            [smoke.Check(**c) for c in data["checks"]],
            data["timeline"],
            data.get("variant", ""),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"cannot read the smoke check from {path}: {err}") from None
    print(json.dumps(report.as_dict(), indent=2) if fmt == "json" else smoke.table(report))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.results", description=__doc__)
    parser.add_argument(
        "source", nargs="+", help="a stage, results.json, its folder, - for stdin, or all"
    )
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--folder", action="store_true", help="print the experiment folder")
    try:
        args = parser.parse_args(argv)
        if len(args.source) == 1 and _smoke_file(args.source[0]) is not None:
            return print_smoke(_smoke_file(args.source[0]), args.format)
        sources = list(registry.names()) if args.source == [ALL] else args.source
        if len(sources) > 1:
            if args.folder or "-" in sources:
                raise ConfigError("several sources (or all) take neither --folder nor -")
            missing = [s for s in sources if not _has_results(_path(s))]
            if missing:  # stages not run (or not finished) yet: leave them out
                print(f"(no results yet for: {', '.join(missing)})", file=sys.stderr)
                sources = [s for s in sources if s not in missing]
            if not sources:
                raise ConfigError("no results for any of the stages")
            return print_all(sources, args.format)
        source = args.source[0]
        is_stage = registry.named_stage(source)
        source = _path(source)
        if args.folder and not is_stage and (source == "-" or not Path(source).exists()):
            raise ConfigError(f"--folder needs a stage or an existing folder, not {source!r}")
        if args.folder:
            # results.json names the folder that holds it.
            print(source if is_stage or Path(source).is_dir() else Path(source).parent)
            return 0
        summary = _read(source, args.source[0])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        data = summary.as_dict()
        print(json.dumps({**data, "trials": [t.as_dict() for t in summary.ranked()]}, indent=2))
    elif args.format == "csv":
        print(records.as_csv(summary), end="")
    else:
        print(records.leaderboard(summary))
        print(records.best_report(summary))
        for line in cost.report_lines(summary.compute):
            print(line)
        note = logs_note(source, summary.stage)
        if note is not None:
            print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
