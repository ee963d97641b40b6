"""Running the project as a user would: modules in a subprocess, with a clean environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs import registry
from jobs.core.reading import env_names, resolve
from jobs.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Debian's dataset-fashion-mnist (installed by .ci/run): real data in MNIST's IDX format.
FASHION_MNIST = Path(os.environ.get("TEST_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
# CI-sized runs: 512 training images in 8 steps of 64 (the steps of 1,024 at the default
# 128, so the curves are alike: lr 1e-3 is at 56% validation accuracy after one epoch, lr 0.1
# diverges), ~6 s an epoch on 2 cores instead of ~10 s; 256 validation images.
# One torch thread a trial (TORCH_THREADS): make test runs two tests at once on two cores, and
# a trial alone on a 2-CPU head takes two threads; a second thread costs ~45% more CPU a step
# (0.92 CPU-s a step of 64 at one thread, 1.33 at two, measured), for little gain in wall
# time where the other core is busy anyway (an asha run of 3x3 epochs: 129 CPU-s at two, 93
# at one, both 81 s alone). Speed only: no result depends on it.
ONE_THREAD = {"TORCH_THREADS": "1"}
CI_SIZE = {"TRAIN_LIMIT": "512", "VAL_LIMIT": "256", "BATCH_SIZE": "64", **ONE_THREAD}
# What every process a test starts gets. OMP_WAIT_POLICY=PASSIVE: torch's idle OpenMP
# threads sleep instead of spinning, so that a trial training beside other work (a unit
# test, a container) shares the 2 cores rather than spins against it (measured: an epoch
# beside another test's took 19 s with it, 34 s without). Speed only: no result depends on
# it. RAY_worker_niceness=0: Ray starts its workers at nice 15 (so that its raylet and GCS
# stay responsive on a busy node); beside the other pytest-xdist worker's tests (nice 0, in
# the same scheduling group) a trial then got a sliver of a core: beside the other worker's
# tests and two CPU burners, a Train run's first checkpoint took over 300 s (at 0, the whole
# driver-loss test took 210 s). At 0 they share the cores as equals. Speed only, as above.
TEST_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "RAY_worker_niceness": "0", **ONE_THREAD}
# Settings a test must not inherit from the shell that runs it: every variable any stage
# reads, from the settings' own declarations (jobs/core/settings.py), so a new one is covered.
PROJECT_ENV = tuple(
    sorted({name for stage in registry.names() for name in env_names(registry.load(stage))})
)


def settings(stage: str, *argv: str, env: Mapping[str, str] | None = None) -> Settings:
    """A stage's settings from flags and an environment (empty by default)."""
    return resolve(registry.load(stage), list(argv), {} if env is None else env)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the project's and Ray's settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "TUNE_", "STOP_")) and k not in PROJECT_ENV
    }
    env.update(
        {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            **TEST_ENV,
            "PYTHONPATH": str(REPO),
            **extra,
        }
    )
    return env


def run_module(
    module: str,
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 600,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def load_results(env: Mapping[str, str], stage: str) -> dict[str, Any]:
    return json.loads((Path(env["STORAGE_PATH"]) / stage / "results.json").read_text())


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr ---\n{proc.stderr[-6000:]}"
    )


def run_make(args: Sequence[str], env: Mapping[str, str], timeout: float = 600):
    """`make -s ARGS` as a user types it, with this interpreter's venv and the env's data."""
    return subprocess.run(
        [
            *("make", "-s", *args),
            f"VENV={Path(sys.executable).parent.parent}",
            f"DATA_DIR={env['DATA_DIR']}",
            f"DATASET={env.get('DATASET', 'mnist')}",
        ],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
