"""The e2e tests' one shared fixture: the image, built (or found cached) once per session.

Needs podman (runc, debootstrap for the stand-in base; .ci/run installs them); every e2e
test skips with the reason where it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from tests.support.runner.podman import CONTAINERS_CONF
from tests.support.runs import REPO


def _podman_problem() -> str | None:
    for tool in ("podman", "debootstrap"):  # debootstrap: the image's stand-in base
        if shutil.which(tool) is None:
            return (
                f"{tool} is not installed (apt-get install podman runc debootstrap; .ci/run does)"
            )
    env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    proc = subprocess.run(["podman", "info"], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return f"podman cannot run here: {proc.stderr.strip()[-300:]}"
    return None


def _build_image() -> str:
    """`make image-offline` (layers cached: seconds when nothing changed), then its tag."""
    proc = subprocess.run(
        ["make", "-s", "image-offline", f"VENV={Path(sys.executable).parent.parent}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, (
        f"image build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return subprocess.run(
        ["make", "-s", "print-image-cpu"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image's tag, built once per test run: under pytest-xdist every worker has its own
    session, so the first to get here builds it, under a lock in the run's shared temp
    folder, and the others read the tag it wrote."""
    problem = _podman_problem()
    if problem:
        pytest.skip(problem)
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    built = shared / "image-tag"
    with FileLock(f"{built}.lock"):
        if not built.is_file():
            built.write_text(_build_image())
        return built.read_text()
