"""Checks of the machine and the network, run before any cluster work.

The storage folder must be writable (or creatable) and the Ray address must answer.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobs.core.parsers import ConfigError, host_port


def check_storage_writable(path: str) -> None:
    """Fail unless `path` is a writable folder or could be created as one.

    Walks up to the nearest existing ancestor and proves it writable by creating and removing
    an empty temporary folder there (permission bits lie to root and to read-only mounts).
    """
    import tempfile

    target = Path(path)
    missing = []
    probe = target
    while not os.path.lexists(probe) and probe.parent != probe:
        missing.append(probe.name)
        probe = probe.parent
    for name in missing:
        if len(name.encode()) > 255:
            raise ConfigError(f"STORAGE_PATH {path} has a folder name over 255 bytes")
    if os.path.islink(probe) and not probe.exists():
        raise ConfigError(f"STORAGE_PATH {path} is under a broken symlink ({probe})")
    if not probe.is_dir():
        raise ConfigError(f"STORAGE_PATH {path} is not a folder ({probe} is a file)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=probe))
    except OSError as exc:
        raise ConfigError(
            f"STORAGE_PATH {path} is not writable ({probe}: {exc.strerror or exc})"
        ) from None


def check_address_reachable(address: str | None, timeout_s: float = 3.0) -> None:
    """Fail fast with one line if RAY_ADDRESS names a host:port nobody listens on."""
    import socket

    if address is None or address in ("auto", "local"):
        return
    where = host_port(address)
    if where is None:
        raise ConfigError(f"RAY_ADDRESS {address!r} is not host:port or a URL with a port")
    try:
        with socket.create_connection(where, timeout=timeout_s):
            return
    except OSError as exc:
        raise ConfigError(
            f"RAY_ADDRESS {address} is unreachable ({exc.strerror or exc}); "
            "start the cluster or port-forward first"
        ) from None
