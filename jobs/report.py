"""`python -m jobs.report SOURCE`: write a run's report.html and the index, print its path.

SOURCE is a stage name (its current run under STORAGE_PATH, as `make report` passes it), a
run's folder (an archived `<stage>.archived-<time>`, or a copy under results/k8s/), or
`index` for the storage root's index.html alone. Every stage already writes both after each
attempt; this regenerates them from the volume, e.g. after a driver was killed before it
could (jobs.core.report).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs import registry
from jobs.core import report, runs
from jobs.core.parsers import ConfigError
from jobs.core.reading import Parser
from jobs.core.settings import experiment_dir


def folder_of(source: str) -> Path:
    """The run folder SOURCE names; ConfigError when it holds no run."""
    path = experiment_dir(source, os.environ) if registry.named_stage(source) else Path(source)
    path = path.resolve()  # `.` names its folder: the index goes one level up
    if not runs.is_run(path) and not runs.attempts_folder(path).is_dir():
        raise ConfigError(
            f"no run at {path}: neither results.json, Tune's trials nor attempt logs "
            "(a stage that never ran on this volume has none)"
        )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.report", description=__doc__)
    parser.add_argument("source", help="a stage, a run's folder, or `index`")
    parser.add_argument("--dry-run", action="store_true", help="say what it would write")
    try:
        args = parser.parse_args(argv)
        root = experiment_dir("index", os.environ).parent
        folder = None if args.source == "index" else folder_of(args.source)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        target = [] if folder is None else [folder / report.REPORT_FILE]
        for path in [*target, (folder.parent if folder else root) / report.INDEX_FILE]:
            print(f"would write {path}")
        return 0
    if folder is None:
        print(report.write_index(root))
        return 0
    written = report.refresh(folder)
    for path in written[1:]:
        print(f"index: {path}", file=sys.stderr)
    print(written[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
