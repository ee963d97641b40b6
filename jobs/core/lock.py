"""One run per stage and storage path at a time.

Two drivers of one stage on one volume (two RayJobs of the same stage, or a KubeRay retry
whose new driver starts while the old cluster's driver is still being torn down) would both
restore and write the same Tune experiment. The run therefore holds an OS file lock
(`filelock`, i.e. flock; on NFS the client maps it to a server-side lock) beside the
experiment folder for as long as it runs. A second run waits up to LOCK_WAIT_S for it, then
gives up with one error line. The kernel (or the NFS server, after its lease) releases the
lock of a process that died, so a killed run never blocks the next attempt for good; the
lock file itself stays, empty of meaning.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from jobs.core.parsers import ConfigError


def lock_path(experiment_dir: Path) -> Path:
    """Beside the experiment, so that `--fresh` can move the experiment folder away."""
    return experiment_dir.with_name(f".{experiment_dir.name}.lock")


def _holder(path: Path) -> str:
    try:
        owner = json.loads(path.with_suffix(".owner").read_text())
        return f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
    except (OSError, ValueError, KeyError):
        return "another run"


@contextmanager
def exclusive(experiment_dir: Path, wait_s: float) -> Iterator[None]:
    path = lock_path(experiment_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, timeout=wait_s)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ConfigError(
            f"{experiment_dir} is in use by {_holder(path)} (waited {wait_s:g}s for its lock "
            f"{path}); let it finish or stop it, then run again"
        ) from None
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%FT%T")}
        path.with_suffix(".owner").write_text(json.dumps(owner))
        yield
    finally:
        lock.release()
