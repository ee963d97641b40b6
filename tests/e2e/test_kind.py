"""The kind end-to-end test (tests/e2e/kind.sh), run where Docker, kind and helm exist."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.runs import REPO

SCRIPT = REPO / "tests" / "e2e" / "kind.sh"
PREFLIGHT_FAILED = 3  # the script's exit code when a tool or the Docker daemon is missing


def _missing() -> str | None:
    tools = [t for t in ("docker", "kind", "kubectl", "helm") if shutil.which(t) is None]
    if tools:
        return f"needs {', '.join(tools)} on PATH"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "no Docker daemon answers (docker info fails)"
    return None


def test_rayjob_tune_succeeds_on_kind() -> None:
    reason = _missing()
    if reason:
        pytest.skip(f"kind e2e: {reason}")
    proc = subprocess.run(
        [str(SCRIPT), "run"], cwd=REPO, capture_output=True, text=True, timeout=3600
    )
    if proc.returncode == PREFLIGHT_FAILED:
        pytest.skip(f"kind e2e: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    assert "ok: 2 trials" in proc.stdout
