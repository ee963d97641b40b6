"""One run per stage and storage path: a second run waits, then refuses in one line; the
lock of a run that was killed never blocks the next one (jobs/core/lock.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs.core.lock import exclusive, lock_path
from tests.support.runs import REPO
from tests.support.zygote import Zygote

HOLD = """
import sys, time
from pathlib import Path
from jobs.core.lock import exclusive
with exclusive(Path(sys.argv[1]), wait_s=5):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold(experiment: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(experiment), str(seconds)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_of_the_stage_refuses_in_one_line(
    tiny_env: dict[str, str], zygote: Zygote
) -> None:
    experiment = Path(tiny_env["STORAGE_PATH"]) / "tune"
    holder = hold(experiment, 60)
    try:
        proc = zygote.run("jobs.tune", ["--lock-wait-s", "1"], tiny_env)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"pid {holder.pid}" in line and "waited 1s" in line
    assert not experiment.exists(), "the refused run wrote nothing"


def test_a_run_waits_for_one_that_ends(tmp_path: Path) -> None:
    experiment = tmp_path / "tune"
    holder = hold(experiment, 1.5)
    start = time.monotonic()
    with exclusive(experiment, wait_s=30):
        waited = time.monotonic() - start
    holder.wait()
    assert 0.5 < waited < 30


def test_the_lock_of_a_killed_run_is_released(tmp_path: Path) -> None:
    experiment = tmp_path / "tune"
    holder = hold(experiment, 600)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(experiment).exists()  # the file stays; the lock on it is gone
    # wait_s=0: one try, no waiting; it succeeds only if the dead holder's lock is gone.
    with exclusive(experiment, wait_s=0):
        assert lock_path(experiment).exists()
