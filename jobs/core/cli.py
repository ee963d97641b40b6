"""The command line every stage shares: --help, --dry-run, checks, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from jobs.core import attempts
from jobs.core.checks import check_address_reachable, check_storage_writable
from jobs.core.lock import exclusive
from jobs.core.parsers import ConfigError
from jobs.core.reading import resolve
from jobs.core.records import error_report
from jobs.core.settings import Settings
from jobs.core.stage import Stage

EXIT_BAD_INPUT = 2
EXIT_TRIALS_FAILED = 1


def bad_input(err: ConfigError) -> int:
    """Report a bad setting as one line on stderr; the exit code for it."""
    print(f"error: {err}", file=sys.stderr)
    return EXIT_BAD_INPUT


def validate(settings: Settings, *, local: bool = True) -> None:
    """Everything that can be checked before any cluster work or write.

    `local=False` (a job submitted to a remote cluster): the storage and data live there,
    so only the address is checked here.
    """
    if local:
        # Imported here: jobs.core.idx needs numpy, which a submission to a remote cluster
        # (the workstation's client venv) does not have.
        from jobs.core.idx import validate_dataset

        check_storage_writable(settings.storage_path)
        validate_dataset(
            settings.data_dir, settings.dataset, settings.train_limit, settings.val_limit
        )
    check_address_reachable(settings.ray_address)


def prepare(
    stage: Stage,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    local: bool = True,
) -> Settings:
    """Resolve and check the settings, then the stage's own preflight. Raises ConfigError."""
    settings = resolve(stage, argv, env)
    validate(settings, local=local)
    # The stage's own check, or its run's (a TuneRun checks --resume).
    check = stage.preflight or getattr(stage.run, "preflight", None)
    if local and check is not None:
        check(settings)
    return settings


def main(stage: Stage, argv: Sequence[str] | None = None) -> int:
    """`python -m jobs.<stage>`: exit 0 when every trial finished, 1 when some errored,
    2 on bad input (one `error:` line; nothing written when found before the run starts,
    only the lock files and the attempt's log when found once connected: jobs/README.md, Exit
    codes)."""
    try:
        settings = prepare(stage, sys.argv[1:] if argv is None else list(argv))
    except ConfigError as err:
        return bad_input(err)
    if settings.dry_run:
        print(settings.to_json())
        return 0
    # From here on the run writes: its output goes to the attempt's log on the volume too.
    try:
        with attempts.recorded(settings.experiment_dir) as attempt:
            code = _run(stage, settings, attempt)
    except BaseException:
        # A crashed attempt leaves its report too, once its log holds the traceback (the
        # attempt's context writes it there on the way out).
        write_report(settings)
        raise
    return code


def write_report(settings: Settings) -> None:
    """The run's report.html and the storage root's index.html, after every attempt. A
    report that cannot be written costs a warning, never the run's exit code."""
    try:
        from jobs.core import report

        for path in report.refresh(settings.experiment_dir):
            print(f"[{settings.stage}] report: {path}", flush=True)
    except Exception as err:  # the run's outcome is already decided
        print(f"[{settings.stage}] warning: no report written: {err!r}", flush=True)


def _run(stage: Stage, settings: Settings, attempt: attempts.Attempt) -> int:
    """The stage under the experiment's lock; the attempt's end and its report are written
    before the lock is released (a run waiting for it may archive the folder)."""
    try:
        with exclusive(settings.experiment_dir, settings.lock_wait_s):
            code = _outcome(settings, stage.run(settings))
            attempt.finish(code)
            write_report(settings)
            return code
    except ConfigError as err:  # a busy experiment, or found once connected (no GPU node)
        code = bad_input(err)
        attempt.finish(code)  # refused: nothing more written
        return code


def _outcome(settings: Settings, summary: Any) -> int:
    errored = summary.counts["errored"]
    if errored:
        for line in error_report(summary, settings.trial_memory_mib):
            print(f"error: {line}", file=sys.stderr)
        print(f"error: {errored} of {len(summary.trials)} trials errored", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    if summary.best is None:
        print(
            f"error: no trial reported {summary.metric} (stopped before its first epoch ended)",
            file=sys.stderr,
        )
        return EXIT_TRIALS_FAILED
    return 0
