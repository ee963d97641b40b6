"""`python -m jobs.logs SOURCE [--attempt N|ID] [--list]`: a stage's attempts and their logs.

Every run of a stage (each KubeRay retry, a resume after a suspension, a rerun) writes its
driver's output to `<STORAGE_PATH>/<stage>.logs/<UTC start>_<attempt id>.log`, on the shared
volume, so the log of an attempt whose cluster is gone can still be read (jobs.core.attempts).
This lists the attempts, oldest first (on stderr), and prints one log (default: the last).

SOURCE is a stage name (its folder under STORAGE_PATH, as `make logs` passes it), a
`<stage>.logs` folder, the experiment folder beside it, or a folder `make logs TARGET=k8s`
copied from the cluster's volume. `--attempt` takes the number in the list (negative
counts from the end) or part of the attempt id (the Ray job id, e.g. a RayJob's jobId).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs import registry
from jobs.core import attempts
from jobs.core.parsers import ConfigError
from jobs.core.reading import Parser
from jobs.core.settings import experiment_dir


def folder_of(source: str) -> Path:
    """The attempts' folder SOURCE names."""
    if registry.named_stage(source):
        return attempts.logs_dir(experiment_dir(source, os.environ))
    path = Path(source)
    if not path.is_dir():
        raise ConfigError(
            f"no attempt logs at {source} (neither a stage nor a folder; a stage that never "
            "ran on that volume has none)"
        )
    if attempts.attempts(path):
        return path
    for candidate in (attempts.logs_dir(path), path / "logs"):
        if candidate.is_dir():
            return candidate
    return path


def choose(found: list[attempts.AttemptFiles], wanted: str) -> attempts.AttemptFiles:
    try:
        number = int(wanted)
    except ValueError:
        matches = [f for f in found if wanted in f.name]
        if len(matches) != 1:
            names = ", ".join(f.name for f in found)
            raise ConfigError(
                f"--attempt {wanted!r} matches {len(matches)} attempts (of: {names})"
            ) from None
        return matches[0]
    index = number - 1 if number > 0 else number
    if number == 0 or not -len(found) <= index < len(found):
        raise ConfigError(f"--attempt {number}: there are {len(found)} attempts (1-{len(found)})")
    return found[index]


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.logs", description=__doc__)
    parser.add_argument("source", help="a stage, its .logs folder, or a copied logs folder")
    parser.add_argument("--attempt", default="-1", help="number in the list, or part of its id")
    parser.add_argument("--list", action="store_true", help="only list the attempts")
    try:
        args = parser.parse_args(argv)
        folder = folder_of(args.source)
        found = attempts.attempts(folder)
        if not found:
            raise ConfigError(
                f"no attempt logs in {folder} (no run of this stage wrote there; for a "
                "cluster's volume: make logs TARGET=k8s)"
            )
        chosen = None if args.list else choose(found, args.attempt)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    listing = sys.stdout if args.list else sys.stderr
    print(f"attempts in {folder} (oldest first):", file=listing)
    for number, files in enumerate(found, 1):
        print(attempts.describe(files, number), file=listing)
    if chosen is None:
        return 0
    print(f"--- {chosen.log} ---", file=sys.stderr, flush=True)
    sys.stdout.write(chosen.log.read_text(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
