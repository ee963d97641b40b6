"""tests/support/kuberay/reconcile.py against the KubeRay v1.7.0 lines it ports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.kuberay import reconcile
from tests.support.kuberay.reconcile import JobInfo, on_job_info

SRC = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay-v1.7.0" / "src"


@pytest.mark.parametrize(
    ("phase", "terminated", "policy", "deleted"),
    [
        ("Failed", False, "Always", True),  # a terminal phase: deleted, whatever the policy
        ("Succeeded", True, "Never", True),
        ("Running", True, "Never", True),  # cannot restart: deleted
        ("Running", True, "Always", False),  # the kubelet restarts it in place
        ("Running", True, "OnFailure", False),
        ("Running", False, "Never", False),
        ("Pending", False, "Always", False),
    ],
)
def test_should_delete_pod(phase: str, terminated: bool, policy: str, deleted: bool) -> None:
    assert reconcile.should_delete_pod(phase, terminated, policy) is deleted


def test_workers_to_add_counts_what_is_listed_and_not_just_deleted() -> None:
    assert reconcile.workers_to_add(2, ["a", "b"], set()) == 0
    assert reconcile.workers_to_add(2, ["a"], set()) == 1  # one gone: replaced
    assert reconcile.workers_to_add(2, ["a", "b"], {"b"}) == 1
    assert reconcile.workers_to_add(1, ["a", "b"], set()) == 0  # surplus: not ours to cut


def test_on_job_info_follows_the_running_case_of_the_rayjob_controller() -> None:
    assert on_job_info(JobInfo.FOUND, False).reset_timer
    waiting = on_job_info(JobInfo.NOT_FOUND, False)
    assert waiting == reconcile.JobInfoDecision()  # requeue, no clock either way
    after = on_job_info(JobInfo.NOT_FOUND, True)
    assert after.fail == reconcile.NOT_FOUND_AFTER_SUBMITTER and not after.start_timer
    assert on_job_info(JobInfo.UNREACHABLE, True).start_timer


def test_the_ported_lines_are_in_the_shared_kuberay_source() -> None:
    """The job-info rule's lines, as they read in rayjob_controller.go: a BadRequest (404)
    requeues unless the submitter finished, then AppFailed with the message we print."""
    path = SRC / "rayjob_controller.go"
    if not path.is_file():
        pytest.skip(f"KubeRay's source is not at {path} (this project's machines have it)")
    source = path.read_text()
    case = source[source.index("jobInfo, err := rayDashboardClient.GetJobInfo") :]
    case = case[: case.index("// Reset JobStatusCheckFailureStartTime")]
    assert "if errors.IsBadRequest(err) {" in case
    assert re.search(r"if finishedAt != nil \{\s+.*JobDeploymentStatusFailed", case, re.S)
    assert f'"{reconcile.NOT_FOUND_AFTER_SUBMITTER}"' in case
    assert case.index("IsBadRequest") < case.index("recordJobStatusCheckFailure")
