"""The cloud's side of a Spot pool: reclaims on an event or a seeded schedule."""

from __future__ import annotations

import threading
import time

from tests.support.runner.podman import (
    log,
)
from tests.support.runner.state import (
    Attempt,
    Reclaim,
)


class SpotProvider:
    """A Spot pool's reclaims: the notice, the pods' grace, the node gone (values spot_reclaim)."""

    def _reclaim_due(self, attempt: Attempt, now: float) -> str | None:
        """Why a reclaim is due now, while the Ray job runs: "event" (--reclaim-when's file
        exists, once) or "schedule" (the next of --reclaim-schedule's times has passed)."""
        if attempt.job_running_at is None:
            return None
        when = self.options.reclaim_when
        if when is not None and not self.reclaim_event_done and when.exists():
            return "event"
        if self.reclaims_due and now - attempt.job_running_at >= self.reclaims_due[0]:
            return "schedule"
        return None

    def _spot(self, attempt: Attempt) -> None:
        """The provider's side of a Spot pool (values: spot_reclaim). Once --reclaim-when's
        file exists while the job runs, one T4 node that holds a pod gets the notice: it is
        cordoned, the kubelet's graceful node shutdown SIGTERMs its pods' containers and
        SIGKILLs them after grace_s (the pod's terminationGracePeriodSeconds where the
        values say null), leaving the pods Failed for KubeRay to delete and replace; when
        notice_s is over the VM, and so the node, is gone."""
        now = time.monotonic()
        for r in self.reclaims:
            if r.gone_at is None and now - r.notice_at >= r.notice_s:
                node = next(n for n in self.nodes.nodes if n.name == r.node)
                self.nodes.remove(node)
                r.gone_at = now
                log(f"cloud: Spot node {r.node} is gone ({r.notice_s:g}s after the notice)")
        due = self._reclaim_due(attempt, now)
        if due is None:
            return
        node = self.nodes.reclaimable()
        if node is None:
            return  # no Spot node holds a pod yet: it is due again next tick
        if due == "event":
            self.reclaim_event_done = True
        else:
            self.reclaims_due.pop(0)
        victims = [
            c for c in attempt.ray if c.node == node.name and c.phase in ("Initializing", "Running")
        ]
        terms = self.options.values["spot_reclaim"]
        pod_grace = min(
            (float(c.spec.get("terminationGracePeriodSeconds", 30)) for c in victims), default=30
        )
        grace = min(
            float(terms["notice_s"]),
            pod_grace if terms["grace_s"] is None else float(terms["grace_s"]),
        )
        reclaim = Reclaim(node.name, self.nodes.reclaim(node), now, float(terms["notice_s"]), grace)
        self.reclaims.append(reclaim)
        log(
            f"cloud: Spot node {node.name} reclaimed: notice {reclaim.notice_s:g}s; node "
            f"cordoned; graceful node shutdown gives pods {', '.join(reclaim.pods)} {grace:g}s"
        )
        for c in victims:
            c.phase, c.reason = "Terminating", "node shutdown"
        names = [c.name for c in victims]
        inits = [c.init[0] for c in victims if c.init is not None]

        def shutdown() -> None:
            self.podman.stop([*names, *inits], grace)
            with self._lock:
                for c in victims:
                    c.phase, c.reason = "Failed", "Terminated: node shutdown"
            log(f"cloud: pods {', '.join(names)} Failed (Terminated) after the node shutdown")

        thread = threading.Thread(target=shutdown, name=f"reclaim-{node.name}")
        thread.start()
        self.deleting.append(thread)
