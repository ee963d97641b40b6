"""Kueue's side of a queued RayJob: admission and preemption."""

from __future__ import annotations

import time

from tests.support import kueue
from tests.support.runner.podman import (
    log,
)
from tests.support.runner.state import (
    Attempt,
    Outcome,
)


class KueueAdmission:
    """Kueue admitting a suspended RayJob and preempting a running one (tests/support/kueue.py)."""

    def _preempted(self, attempt: Attempt) -> bool:
        """Kueue's preemption, once per run, while the attempt's Ray job is RUNNING: Kueue
        evicts the workload and suspends the RayJob. When is the test's to say: a time since
        RUNNING (--preempt-after-s) or an event, a file the test creates (--preempt-when)."""
        after, when = self.options.preempt_after_s, self.options.preempt_when
        if (after is None and when is None) or self.suspensions or attempt.job_running_at is None:
            return False
        if after is not None and time.monotonic() - attempt.job_running_at < after:
            return False
        if when is not None and not when.exists():
            return False
        cause = f"after {after:g}s of" if when is None else f"on {when.name}, during"
        log(
            f"kueue: preempting the workload of LocalQueue {self.queue} {cause} "
            f"attempt {attempt.number}'s job RUNNING: spec.suspend=true"
        )
        self.spec["suspend"] = True
        return True

    def _suspending(self, attempt: Attempt, phase: str) -> Outcome:
        """updateStatusToSuspendingIfNeeded: spec.suspend moves an Initializing or Running
        RayJob to Suspending, ahead of every deadline check."""
        log(f"attempt {attempt.number}: {phase} -> Suspending (spec.suspend=true)")
        return Outcome("Suspending", attempt.job_status, "Suspended", "spec.suspend is true")

    def _admit(self) -> Outcome | None:
        """The Suspended case: nothing runs until spec.suspend is false, which only Kueue's
        admission sets here; then Suspended -> New (None: go on with a new attempt)."""
        if not self.queue:
            log("Suspended: spec.suspend is true and no queue label: nothing will unsuspend it")
            return Outcome(
                "Suspended",
                "",
                "Suspended",
                f"spec.suspend is true and nothing unsuspends it (no {kueue.QUEUE_LABEL} label)",
            )
        log(
            f"kueue: workload pending in LocalQueue {self.queue}; admitting it in "
            f"{self.options.admit_after_s:g}s"
        )
        time.sleep(self.options.admit_after_s)
        self.spec["suspend"] = False
        self.admissions += 1
        log(
            f"kueue: workload admitted (admission {self.admissions}): spec.suspend=false; "
            "KubeRay: Suspended -> New (a new job id and cluster name)"
        )
        return None
