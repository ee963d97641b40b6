"""The status sequences KubeRay v1.7.0's RayJob controller writes (rayjob_controller.go),
replayed by the stand-in kubectl (tests/support/kuberay/fake_kubectl.py) to test our waits.

Each status is (jobDeploymentStatus, jobStatus, failed, succeeded, reason, message):
- a new RayJob: initRayJobStatusIfNeed -> Initializing; the cluster ready -> Running;
  GetJobInfo copies the Ray job's status into jobStatus while Running;
- the submitter Job done and the Ray job terminal -> Complete (SUCCEEDED) or Failed
  (AppFailed); checkBackoffLimitAndUpdateStatusIfNeeded counts failed/succeeded and turns
  a Failed with attempts left into Retrying in the same write, so "Failed" is never seen
  for a retried attempt, while jobStatus is FAILED in between;
- Retrying deletes the cluster and the submitter Job, resets the status to "" and a new
  attempt starts at Initializing with a new cluster and job id;
- checkActiveDeadlineAndUpdateStatusIfNeeded: per attempt (startTime resets), reason
  DeadlineExceeded, which is never retried;
- validateRayJob failing: ValidationFailed, which the controller never leaves.
"""

from __future__ import annotations

Status = tuple[str, str, int, int, str, str]

_RUNNING = "Job is currently running."
_DONE = "Job finished successfully."
_APP_FAILED = "Job entrypoint command failed with exit code 1"
DEADLINE = (
    "The RayJob has passed the activeDeadlineSeconds. StartTime: 2026-11-29 12:00:00 +0000 UTC. "
    "ActiveDeadlineSeconds: 1800"
)
INVALID = (
    "The RayJob spec is invalid: resource fields should not be set in both rayStartParams "
    "and Resources for t4 group; please use only one"
)


def _attempt(failed: int) -> list[Status]:
    return [
        ("Initializing", "", failed, 0, "", ""),
        ("Running", "", failed, 0, "", ""),
        ("Running", "PENDING", failed, 0, "", ""),
        ("Running", "RUNNING", failed, 0, "", _RUNNING),
    ]


def _failed_attempt(failed: int, backoff_limit: int) -> list[Status]:
    after = failed + 1
    end = "Retrying" if after < backoff_limit + 1 else "Failed"
    steps = [
        *_attempt(failed),
        ("Running", "FAILED", failed, 0, "", _APP_FAILED),
        (end, "FAILED", after, 0, "AppFailed", _APP_FAILED),
    ]
    if end == "Retrying":
        steps.append(("", "", after, 0, "", ""))
    return steps


SCENARIOS: dict[str, list[Status]] = {
    "success": [*_attempt(0), ("Complete", "SUCCEEDED", 0, 1, "", _DONE)],
    "retry_then_success": [
        *_failed_attempt(0, backoff_limit=2),
        *_attempt(1),
        ("Complete", "SUCCEEDED", 1, 1, "", _DONE),
    ],
    "retries_exhausted": [
        *_failed_attempt(0, backoff_limit=2),
        *_failed_attempt(1, backoff_limit=2),
        *_failed_attempt(2, backoff_limit=2),
    ],
    "validation_failed": [("ValidationFailed", "", 0, 0, "ValidationFailed", INVALID)],
    "deadline_exceeded": [*_attempt(0), ("Failed", "RUNNING", 1, 0, "DeadlineExceeded", DEADLINE)],
    "no_operator_running": [],  # the CRD exists, nothing reconciles: the status stays empty
}
