"""`python -m jobs.results SOURCE [--format table|json|csv]`: a stored run's leaderboard.

SOURCE is a stage name (its experiment under STORAGE_PATH, as `make results` passes it),
results.json or the experiment folder holding it, or `-` to read results.json from stdin
(how `make results TARGET=k8s` pipes it from the cluster's volume). `--folder` prints the
experiment folder instead (`make tensorboard`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jobs import registry
from jobs.core import results
from jobs.core.settings import ConfigError, Parser, experiment_dir

FORMATS = ("table", "json", "csv")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.results", description=__doc__)
    parser.add_argument("source", help="a stage, results.json, its folder, or - for stdin")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--folder", action="store_true", help="print the experiment folder")
    try:
        args = parser.parse_args(argv)
        source = args.source
        is_stage = source in registry.names() and not Path(source).exists()
        if is_stage:
            source = str(experiment_dir(source, os.environ))
        elif args.folder and (source == "-" or not Path(source).exists()):
            raise ConfigError(f"--folder needs a stage or an existing folder, not {source!r}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.folder:
        # results.json names the folder that holds it.
        print(source if is_stage or Path(source).is_dir() else Path(source).parent)
        return 0
    try:
        if source == "-":
            summary = results.Summary.from_dict(json.loads(sys.stdin.read()))
        else:
            summary = results.load(Path(source))
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"error: cannot read results from {args.source}: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        data = summary.as_dict()
        print(json.dumps({**data, "trials": [t.as_dict() for t in summary.ranked()]}, indent=2))
    elif args.format == "csv":
        print(results.as_csv(summary), end="")
    else:
        print(results.leaderboard(summary))
        print(results.best_report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
