"""The RayJob controller's view of its Ray job: the dashboard's answers and the deadlines."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.support.kuberay import pods
from tests.support.kuberay.reconcile import (
    JobInfo,
    on_job_info,
)
from tests.support.runner.podman import (
    log,
)
from tests.support.runner.state import (
    Attempt,
    Outcome,
)


class JobStatus:
    """What the RayJob controller asks the dashboard (GetJobInfo, nodes) and does with the
    answers; activeDeadlineSeconds and preRunningDeadlineSeconds."""

    def _dashboard(self, attempt: Attempt, path: str) -> dict[str, Any] | None:
        """The operator's dashboard client: HTTP to the head's dashboard port, with the token;
        None for no answer (a 404 included)."""
        return self._ask(attempt, path)[1]

    def _ask(self, attempt: Attempt, path: str) -> tuple[JobInfo, Any]:
        """A dashboard request and what came of it: an answer, a 404 (the head answered that
        it has no such thing), or none at all."""
        if not attempt.head_ip:
            attempt.head_ip = self.podman(
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                self._head(attempt).name,
                check=False,
            )
        request = urllib.request.Request(f"http://{attempt.head_ip}:{pods.DASHBOARD_PORT}{path}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return JobInfo.FOUND, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return (JobInfo.NOT_FOUND if err.code == 404 else JobInfo.UNREACHABLE), None
        except (OSError, ValueError):
            attempt.head_ip = ""  # a restarted head may come back with another address
            return JobInfo.UNREACHABLE, None

    def _alive_nodes(self, attempt: Attempt) -> int | None:
        nodes = self._dashboard(attempt, "/nodes?view=summary")
        if not nodes:
            return None
        return sum(
            1
            for n in nodes.get("data", {}).get("summary", [])
            if n.get("raylet", {}).get("state") == "ALIVE"
        )

    def _ready(self, attempt: Attempt) -> bool:
        """The RayCluster is ready when every pod runs and the head sees every Ray node."""
        if any(c.phase != "Running" for c in attempt.ray):
            return False
        if any(self.podman.state(c.name)[0] != "running" for c in attempt.ray):
            return False
        alive = self._alive_nodes(attempt)
        return alive is not None and alive >= len(attempt.ray)

    def _deadline_passed(self, attempt: Attempt) -> bool:
        deadline = self.spec.get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - attempt.started > float(deadline)

    def _pre_running_deadline_passed(self, attempt: Attempt) -> bool:
        deadline = self.spec.get("preRunningDeadlineSeconds")
        return deadline is not None and time.monotonic() - attempt.started > float(deadline)

    def _job_status(self, attempt: Attempt, submitter_finished: bool = False) -> str:
        """GetJobInfo and what the controller makes of its answer (reconcile.on_job_info): a
        404 before the submitter finished waits; after it, fails the RayJob; no answer starts
        the status-check clock (recordJobStatusCheckFailure)."""
        answer, info = self._ask(attempt, f"/api/jobs/{attempt.job_id}")
        decision = on_job_info(answer, submitter_finished)
        if answer is JobInfo.NOT_FOUND and not attempt.job_not_found:
            log(f"attempt {attempt.number}: GetJobInfo {attempt.job_id}: 404 (BadRequest)")
        attempt.job_not_found = answer is JobInfo.NOT_FOUND
        attempt.job_info_failure = decision.fail
        if decision.start_timer and attempt.status_failing_since is None:
            attempt.status_failing_since = time.monotonic()
        if decision.reset_timer:
            attempt.status_failing_since = None
        if not isinstance(info, dict):
            return attempt.job_status
        if info.get("status"):
            if info["status"] != attempt.job_status:
                message = info.get("message") or ""
                log(f"attempt {attempt.number}: jobStatus={info['status']} ({message})")
            attempt.job_status = info["status"]
            if attempt.job_status == "RUNNING" and attempt.job_running_at is None:
                attempt.job_running_at = time.monotonic()
        return attempt.job_status

    def _status_checks_timed_out(self, attempt: Attempt) -> Outcome | None:
        """checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded: not retried."""
        since = attempt.status_failing_since
        if since is None or time.monotonic() - since < self.options.status_check_timeout_s:
            return None
        return Outcome(
            "Failed",
            attempt.job_status,
            "JobStatusCheckTimeoutExceeded",
            f"Job status checks have been failing for {time.monotonic() - since:.0f}s; exceeded "
            f"timeout of {self.options.status_check_timeout_s:g}s",
        )

    def _deadline(self, attempt: Attempt) -> Outcome:
        deadline = self.spec.get("activeDeadlineSeconds")
        return Outcome(
            "Failed",
            attempt.job_status,
            "DeadlineExceeded",
            f"The RayJob has passed the activeDeadlineSeconds. StartTime: {attempt.start_time}. "
            f"ActiveDeadlineSeconds: {deadline}",
        )

    def _pre_running_deadline(self, attempt: Attempt) -> Outcome:
        deadline = self.spec.get("preRunningDeadlineSeconds")
        pending = [f"{c.name}: {c.reason}" for c in attempt.ray if c.phase == "Pending"]
        log(f"attempt {attempt.number}: not Running after {deadline}s; pending pods: {pending}")
        return Outcome(
            "Failed",
            attempt.job_status,
            "PreRunningDeadlineExceeded",
            f"The RayJob has passed the preRunningDeadlineSeconds. StartTime: "
            f"{attempt.start_time}. PreRunningDeadlineSeconds: {deadline}",
        )
