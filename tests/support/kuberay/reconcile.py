"""KubeRay v1.7.0's decisions about pods that die and jobs the dashboard can't find, as
the podman runner (tests/support/runner/) applies them. Each function ports one rule,
named by its Go function; tests/unit/test_reconcile.py checks each against those lines.

- `should_delete_pod` (raycluster_controller.go, shouldDeletePod): a Failed or Succeeded pod
  is deleted; a Running pod whose Ray container terminated is deleted only under
  restartPolicy Never (Always and OnFailure: the kubelet restarts it in place).
- `workers_to_add` (raycluster_controller.go, reconcilePods): a group's desired replicas
  minus the pods listed that were not just deleted. A pod that is gone (its node reclaimed,
  or deleted by someone else) is not listed, so it is replaced by a new pod, under a new
  name (the pod name's random suffix), on whatever node the scheduler finds.
- `on_job_info` (rayjob_controller.go, the Running case after GetJobInfo): the dashboard's
  404 for the job id is a BadRequest (dashboard_httpclient.go GetJobInfo). With the
  submitter still running it only means "not submitted yet": the controller requeues
  without starting the status-check failure timer. Once the submitter finished, it fails
  the RayJob (AppFailed, "Submitter completed but Ray job not found in RayCluster.").
  Any other error starts the timer (recordJobStatusCheckFailure); an answer resets it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

NOT_FOUND_AFTER_SUBMITTER = "Submitter completed but Ray job not found in RayCluster."


def should_delete_pod(phase: str, ray_container_terminated: bool, restart_policy: str) -> bool:
    """shouldDeletePod: whether reconcilePods deletes this pod (then recreates it as needed)."""
    if phase in ("Failed", "Succeeded"):
        return True
    if phase == "Running" and ray_container_terminated:
        return restart_policy == "Never"
    return False


def workers_to_add(desired: int, listed: list[str], deleted: set[str]) -> int:
    """reconcilePods' diff for a worker group: > 0 means that many new pods are created."""
    running = [name for name in listed if name not in deleted]
    return max(0, desired - len(running))


class JobInfo(enum.Enum):
    """What GetJobInfo got from the head's dashboard."""

    FOUND = "found"
    NOT_FOUND = "not found"  # HTTP 404: a BadRequest error in the operator
    UNREACHABLE = "unreachable"  # any other error: no answer, a 5xx, bad JSON


@dataclass(frozen=True)
class JobInfoDecision:
    fail: str | None = None  # a message: the RayJob ends Failed with reason AppFailed
    start_timer: bool = False  # recordJobStatusCheckFailure (if not running already)
    reset_timer: bool = False  # JobStatusCheckFailureStartTime = nil


def on_job_info(answer: JobInfo, submitter_finished: bool) -> JobInfoDecision:
    """The Running case of the RayJob controller after GetJobInfo (K8sJobMode)."""
    if answer is JobInfo.FOUND:
        return JobInfoDecision(reset_timer=True)
    if answer is JobInfo.NOT_FOUND:
        if submitter_finished:
            return JobInfoDecision(fail=NOT_FOUND_AFTER_SUBMITTER)
        return JobInfoDecision()  # requeue; the timer neither starts nor resets
    return JobInfoDecision(start_timer=True)
