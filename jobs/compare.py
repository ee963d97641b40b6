"""`python -m jobs.compare SOURCE [--with RUN]`: a run against the one before it, or any run.

SOURCE is a stage name (its current run under STORAGE_PATH, as `make compare` passes it) or
a run's folder. RUN is another run's folder (an archived `<stage>.archived-<time>`, a copy
under results/k8s/) or the name of one beside SOURCE; by default the newest archived run of
the stage (what `--fresh` moved aside). Prints one line per figure: best metric and config,
trials, trial-epochs run and saved, wall time, accelerator-hours and cost, each for both runs
with the difference (jobs.core.compare marks a metric worse beyond its noise band). Exit 0
whenever both runs could be read, whichever is better; 2 when one cannot.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.core import compare, runs
from jobs.core.parsers import ConfigError
from jobs.core.reading import Parser
from jobs.report import folder_of


def other_of(folder: Path, wanted: str | None) -> Path:
    if wanted is None:
        before = runs.previous(folder)
        if before is None:
            raise ConfigError(
                f"no run before {folder} to compare with: none archived beside it "
                "(--fresh archives one; or name one with WITH=<run folder>)"
            )
        return before
    for path in (Path(wanted).resolve(), folder.parent / wanted):
        if runs.is_run(path):
            return path
    raise ConfigError(f"no run at {wanted} (nor {folder.parent / wanted})")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.compare", description=__doc__)
    parser.add_argument("source", help="a stage or a run's folder")
    parser.add_argument("--with", dest="other", help="the run to compare with")
    try:
        args = parser.parse_args(argv)
        this = runs.read(folder_of(args.source))
        other = runs.read(other_of(this.folder, args.other))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(compare.table(this, other, compare.compare(this, other)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
