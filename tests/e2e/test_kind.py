"""The kind end-to-end test (tests/support/kind/kind.sh run: `make e2e-kind`) under pytest.

It skips only where its tools are absent: docker with a daemon that answers, kind, kubectl
and helm (the script's own preflight list). Where they are all there, any non-zero exit of
the script fails the test, its preflight's exit 3 included. The GitHub kind job sets
KIND_E2E_REQUIRED=1: there a missing tool fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.support.runs import REPO

SCRIPT = REPO / "tests" / "support" / "kind" / "kind.sh"
TOOLS = ("docker", "kind", "kubectl", "helm")  # kind.sh preflight()
REQUIRED = os.environ.get("KIND_E2E_REQUIRED") == "1"


def _missing() -> str | None:
    tools = [t for t in TOOLS if shutil.which(t) is None]
    if tools:
        return f"needs {', '.join(tools)} on PATH"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "no Docker daemon answers (docker info timed out)"
    if info.returncode != 0:
        return f"no Docker daemon answers (docker info: {info.stderr.strip()[-300:]})"
    return None


def test_rayjob_tune_succeeds_on_kind() -> None:
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(f"kind e2e (KIND_E2E_REQUIRED=1): {reason}")
        pytest.skip(f"kind e2e: {reason}")
    proc = subprocess.run(
        [str(SCRIPT), "run"], cwd=REPO, capture_output=True, text=True, timeout=3600
    )
    # Every tool was found above, so a preflight failure (exit 3) is a failure here too.
    assert proc.returncode == 0, (
        f"{SCRIPT.name} run exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    assert "ok: 2 trials" in proc.stdout, proc.stdout[-4000:]


def test_it_skips_for_the_tools_the_scripts_preflight_checks() -> None:
    """The skip list above is kind.sh's preflight list: a tool the script needs but the skip
    does not know would turn its exit 3 into a failure where that tool is absent, and one the
    skip names but the script does not need would skip for nothing."""
    match = re.search(
        r"^preflight\(\) \{.*?for tool in ([^;]+); do", SCRIPT.read_text(), re.M | re.S
    )
    assert match, f"no `for tool in ...` in {SCRIPT.name}'s preflight()"
    assert tuple(match.group(1).split()) == TOOLS
