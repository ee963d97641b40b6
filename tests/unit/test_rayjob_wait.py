"""k8s/bin/rayjob.sh (make rayjob) against the status sequences KubeRay's controller writes,
replayed by a stand-in kubectl (tests/support/kuberay/fake_kubectl.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.support.kuberay.fake_kubectl import calls, environment
from tests.support.runs import REPO

SCRIPT = REPO / "k8s" / "bin" / "rayjob.sh"
MANIFEST = REPO / "k8s" / "rayjob-tune.yaml"


def rayjob(
    scenario: str, tmp_path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    settings = {"FAKE_KUBECTL_SCENARIO": scenario, "RAYJOB_POLL_S": "0.01", **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(MANIFEST), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(tmp_path, **settings),
    )


def test_success_exits_zero_with_the_logs(tmp_path: Path) -> None:
    proc = rayjob("success", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attempt 1: Complete jobStatus=SUCCEEDED failed=0 succeeded=1" in proc.stdout
    assert "(submitter log of the last attempt)" in proc.stdout


def test_a_failed_attempt_is_followed_through_the_retry(tmp_path: Path) -> None:
    proc = rayjob("retry_then_success", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    # jobStatus FAILED while Running, then Retrying: the wait goes on to attempt 2.
    assert any("attempt 1: Running jobStatus=FAILED" in line for line in lines), lines
    assert any("attempt 1: Retrying jobStatus=FAILED failed=1" in line for line in lines), lines
    assert any("attempt 2: Initializing" in line for line in lines), lines
    assert "attempt 2: Complete jobStatus=SUCCEEDED failed=1 succeeded=1" in proc.stdout


def test_retries_exhausted_ends_failed(tmp_path: Path) -> None:
    proc = rayjob("retries_exhausted", tmp_path)
    assert proc.returncode == 1
    assert "attempt 3: Failed jobStatus=FAILED failed=3 succeeded=0 reason=AppFailed" in proc.stdout
    assert proc.stdout.count("Retrying") == 2


def test_validation_failed_ends_at_once_with_the_controllers_message(tmp_path: Path) -> None:
    # Any poll would sleep 120 s: ending well before that proves none happened, however
    # loaded the machine is (the whole run takes about a second).
    start = time.monotonic()
    proc = rayjob("validation_failed", tmp_path, RAYJOB_POLL_S="120")
    assert time.monotonic() - start < 120, "ValidationFailed must end the wait at once"
    assert proc.returncode == 1
    assert "the controller refused the RayJob" in proc.stderr
    assert "resource fields should not be set in both rayStartParams" in proc.stderr


def test_deadline_exceeded_is_final(tmp_path: Path) -> None:
    proc = rayjob("deadline_exceeded", tmp_path)
    assert proc.returncode == 1
    assert "Failed jobStatus=RUNNING failed=1 succeeded=0 reason=DeadlineExceeded" in proc.stdout


def test_missing_operator_is_reported_before_applying(tmp_path: Path) -> None:
    proc = rayjob("operator_missing", tmp_path)
    assert proc.returncode == 1
    assert "the KubeRay operator is missing" in proc.stderr
    assert not [c for c in calls(tmp_path) if c.startswith("apply")]


def test_an_operator_that_never_answers_is_reported(tmp_path: Path) -> None:
    proc = rayjob("no_operator_running", tmp_path, RAYJOB_PICKUP_S="1")
    assert proc.returncode == 1
    assert "is the KubeRay operator running?" in proc.stderr


def test_the_default_wait_covers_every_attempt(tmp_path: Path) -> None:
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]
    expected = (spec["backoffLimit"] + 1) * spec["activeDeadlineSeconds"] + 600
    proc = rayjob("success", tmp_path)
    assert f"for up to {expected}s" in proc.stdout


@pytest.mark.parametrize("timeout", ["soon", "-1"])
def test_a_bad_timeout_is_refused(tmp_path: Path, timeout: str) -> None:
    proc = rayjob("success", tmp_path, timeout)
    assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc.stderr
    assert not (tmp_path / "state.calls").exists()


def test_the_empty_status_between_attempts_is_not_a_missing_operator(tmp_path: Path) -> None:
    # Retrying resets the status to "" before the next attempt; that is not "no operator".
    proc = rayjob("retry_then_success", tmp_path, RAYJOB_PICKUP_S="0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attempt 2: Complete jobStatus=SUCCEEDED" in proc.stdout


def test_a_finished_rayjob_is_deleted_and_run_again(tmp_path: Path) -> None:
    proc = rayjob("success", tmp_path, FAKE_KUBECTL_PREVIOUS="Complete|SUCCEEDED|0|1||")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deleting the finished RayJob/ray-tune-tune (Complete)" in proc.stdout
    log = calls(tmp_path)
    deleted = next(i for i, c in enumerate(log) if c.startswith("delete rayjob ray-tune-tune"))
    applied = next(i for i, c in enumerate(log) if c.startswith("apply"))
    assert deleted < applied


def test_a_running_rayjob_is_not_touched(tmp_path: Path) -> None:
    proc = rayjob("success", tmp_path, FAKE_KUBECTL_PREVIOUS="Running|RUNNING|0|0||")
    assert proc.returncode == 1
    assert "still running (Running)" in proc.stderr
    assert not [c for c in calls(tmp_path) if c.startswith(("apply", "delete"))]


def test_brief_api_errors_during_the_wait_are_retried(tmp_path: Path) -> None:
    proc = rayjob("success", tmp_path, FAKE_KUBECTL_GET_FAILURES="3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
