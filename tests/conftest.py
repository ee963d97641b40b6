"""Shared fixtures: real Fashion-MNIST, private storage and Ray temp dirs, stage runners."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# Debian's dataset-fashion-mnist (installed by .ci/run): real data in MNIST's IDX format.
FASHION_MNIST = Path(os.environ.get("TEST_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
# CI-sized runs: a few seconds per epoch on 2 cores, still well above chance accuracy.
CI_SIZE = {"TRAIN_LIMIT": "1024", "VAL_LIMIT": "512"}


def pytest_configure(config: pytest.Config) -> None:
    # In-process Ray (Tuner wiring tests) must not write ~/.ray/auth_token or warn about it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def fashion_mnist() -> Path:
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"Fashion-MNIST is missing at {FASHION_MNIST}: "
            "apt-get install dataset-fashion-mnist (.ci/run does)"
        )
    return FASHION_MNIST


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short private Ray temp dir (Ray's socket paths must stay under ~107 chars)."""
    path = Path(tempfile.mkdtemp(prefix="rtk-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stage_env(tmp_path: Path, fashion_mnist: Path, ray_tmp: Path) -> dict[str, str]:
    """Environment for running a stage as a user would, isolated from the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))}
    for key in (
        "STORAGE_PATH",
        "DATA_DIR",
        "DATASET",
        "ACCELERATOR",
        "TRAIN_LIMIT",
        "VAL_LIMIT",
        "BATCH_SIZE",
        "SEED",
        "FAIL_AT_EPOCH",
    ):
        env.pop(key, None)
    env.update(
        {
            "STORAGE_PATH": str(tmp_path / "storage"),
            "DATA_DIR": str(fashion_mnist),
            "DATASET": "fashion-mnist",
            "RAY_TMPDIR": str(ray_tmp),
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(REPO),
            **CI_SIZE,
        }
    )
    return env


def run_module(
    module: str,
    args: list[str],
    env: dict[str, str],
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_results(env: dict[str, str], stage: str) -> dict[str, Any]:
    return json.loads((Path(env["STORAGE_PATH"]) / stage / "results.json").read_text())


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr ---\n{proc.stderr[-6000:]}"
    )
