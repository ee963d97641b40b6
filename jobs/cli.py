"""The command line every stage shares: --help, --dry-run, checks, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from jobs.config import (
    ConfigError,
    Settings,
    check_address_reachable,
    check_storage_writable,
    resolve,
)
from jobs.data import require_idx_dir
from jobs.lock import exclusive

EXIT_BAD_INPUT = 2
EXIT_TRIALS_FAILED = 1


def bad_input(err: ConfigError) -> int:
    """Report a bad setting as one line on stderr; the exit code for it."""
    print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def validate(settings: Settings) -> None:
    """Everything that can be checked before any cluster work or write."""
    check_storage_writable(settings.storage_path)
    require_idx_dir(settings.data_dir, settings.dataset)
    check_address_reachable(settings.ray_address)


def main(
    stage: str,
    run: Callable[[Settings], dict[str, Any]],
    preflight: Callable[[Settings], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        settings = resolve(stage, args)
        validate(settings)
        if preflight is not None:
            preflight(settings)
    except ConfigError as err:
        return bad_input(err)
    if settings.dry_run:
        print(settings.to_json())
        return 0
    try:
        with exclusive(settings.experiment_dir, settings.lock_wait_s):
            summary = run(settings)
    except ConfigError as err:  # a busy experiment, or found once connected (no GPU node)
        return bad_input(err)
    errored = summary["counts"]["errored"]
    if errored or summary["best"] is None:
        print(f"error: {errored} of {len(summary['trials'])} trials errored", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return 0
