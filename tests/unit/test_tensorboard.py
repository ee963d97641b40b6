"""The driver writes TensorBoard events without torch (jobs/core/tensorboard.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.runs import REPO, clean_env

# What a Tune driver does: Tune's TensorBoard logger made, a trial's floats written.
WRITE_EVENTS = """
import sys
{before}
from ray.tune.logger import TBXLoggerCallback
TBXLoggerCallback()
from tensorboardX import SummaryWriter
with SummaryWriter(sys.argv[1]) as writer:
    writer.add_scalar("val_loss", 0.5, 1)
print("torch" in sys.modules)
"""


def _driver(before: str, logdir: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", WRITE_EVENTS.format(before=before), str(logdir)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_tensorboard_events_are_written_without_torch(tmp_path: Path) -> None:
    loaded = "from jobs.core.tensorboard import load_tensorboardx\nassert load_tensorboardx()"
    assert _driver(loaded, tmp_path / "lean") == "False"
    (events,) = (tmp_path / "lean").glob("events.out.tfevents.*")
    assert events.stat().st_size > 0
    # The control: Tune's own way loads torch in the driver.
    assert _driver("", tmp_path / "plain") == "True"


def test_load_tensorboardx_leaves_a_process_that_has_torch_alone() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, torch\nfrom jobs.core.tensorboard import load_tensorboardx\n"
            "print(load_tensorboardx(), sys.modules['torch'] is torch)",
        ],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.split() == ["False", "True"], proc.stderr
