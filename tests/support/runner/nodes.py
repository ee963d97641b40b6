"""The nodes a variant declares (k8s/values/<variant>.yaml, `nodes`), played for the podman
runner: a pod runs only where the kube-scheduler would put it, and node pools grow and shrink
as a node autoscaler (GKE's, Cluster Autoscaler, Karpenter) would grow and shrink them.

- Scheduling: the scheduler's filters (jobs/kube/scheduling.py: requests against what is left of
  a node's allocatable after the system reserve and the pods already there, node selector
  and affinity, taints) on every node; the first node that passes takes the pod. A pod that
  fits nowhere stays Pending with the scheduler's message ("0/2 nodes are available: ...").
- Scale up: a pending pod that would fit an empty node of a pool below its `max_nodes` makes
  that pool add a node, which is Ready after `boot_s` (a cold node: boot, driver, pull).
  The head's pool holds one node from the start and never scales (the walk makes it so);
  the GPU pool starts at zero.
- Scale down: a node of the GPU pool with no pod for `idle_s` is removed.
- Stockout: `stockout_s` seconds from the start (inf: for ever) the GPU pool adds no node,
  as when the zone has no T4 left (GCE's ZONE_RESOURCE_POOL_EXHAUSTED, EC2's
  InsufficientInstanceCapacity); a pending pod stays Pending, saying so, until it lifts.
- Spot: with `spot: true` the GPU pool is a Spot pool, its nodes carrying the values'
  `spot_node_selector` labels and `spot_node_taints`. `reclaim` is the provider's notice for
  one of its nodes: cordoned at once (no new pod lands there), removed by `remove` when the
  notice ends; a pod that loses its node is Pending again and the pool adds a node for it.
Only the runner's own bookkeeping: nothing here talks to podman.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobs.kube import scheduling


@dataclass
class Node:
    name: str
    pool: str
    shape: dict[str, Any]  # allocatable, labels, taints
    ready_at: float
    pods: dict[str, dict[str, float]] = field(default_factory=dict)  # pod name -> requests
    empty_since: float | None = None
    nominated: str | None = None  # the pending pod this booting node was added for
    reclaimed_at: float | None = None  # the provider's notice came: cordoned until removed

    def ready(self, now: float) -> bool:
        return now >= self.ready_at


@dataclass
class Pool:
    name: str  # head | t4 (the values' roles)
    shape: dict[str, Any]
    max_nodes: int
    scales: bool


class Cluster:
    """The nodes of one variant; `place` is called for each pending pod, `tick` every poll."""

    def __init__(
        self,
        values: dict[str, Any],
        *,
        boot_s: float = 5.0,
        idle_s: float = 10.0,
        stockout_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = print,
    ) -> None:
        nodes = values["nodes"]
        self.reserve = {k: scheduling.quantity(v) for k, v in nodes["system_reserve"].items()}
        self.clock, self.log = clock, log
        self.boot_s, self.idle_s = boot_s, idle_s
        single = nodes["head"] == {k: v for k, v in nodes["t4"].items() if k != "max_nodes"}
        self.pools = [Pool("head", nodes["head"], 1, scales=False)]
        self.spot = bool(values.get("spot"))
        if not single:  # kind: one node holds every pod
            t4 = nodes["t4"]
            if self.spot:  # the cloud script created a Spot pool (k8s/templates/cloud-*.sh.j2)
                t4 = {
                    **t4,
                    "labels": {**t4["labels"], **values["spot_node_selector"]},
                    "taints": [*t4["taints"], *values.get("spot_node_taints", [])],
                }
            self.pools.append(Pool("t4", t4, int(t4.get("max_nodes", 1)), True))
        self.nodes: list[Node] = []
        self._names = itertools.count(1)
        self.added = self.removed = 0
        self.reclaimed: list[str] = []  # nodes the provider took back
        self.max_nodes_seen: dict[str, int] = {}
        now = clock()
        self.stockout_until = now + stockout_s
        self.refused = 0  # scale-ups the stockout refused
        self.nodes.append(self._node(self.pools[0], ready_at=now))

    def _node(self, pool: Pool, ready_at: float) -> Node:
        return Node(f"{pool.name}-node-{next(self._names)}", pool.name, pool.shape, ready_at)

    def _taken(self, node: Node) -> dict[str, float]:
        taken = dict(self.reserve)
        for requests in node.pods.values():
            for key, amount in requests.items():
                taken[key] = taken.get(key, 0.0) + amount
        return taken

    def place(self, pod_name: str, spec: dict[str, Any]) -> tuple[Node | None, str]:
        """Put the pod on a Ready node where it fits, else ask a pool for a node. Returns
        (node, "") once placed, or (None, the reason it is Pending)."""
        now = self.clock()
        reasons: dict[str, int] = {}
        for node in self.nodes:
            why = scheduling.why_not(spec, node.shape, self._taken(node))
            if node.reclaimed_at is not None:
                why = ["node(s) were unschedulable"]  # cordoned: shutting down
            if not why and node.ready(now) and node.nominated in (None, pod_name):
                node.pods[pod_name] = scheduling.pod_requests(spec)
                node.empty_since = None
                node.nominated = None
                return node, ""
            for reason in why or ["node(s) were not ready"]:
                key = reason.split(" (")[0]
                reasons[key] = reasons.get(key, 0) + 1
        message = f"0/{len(self.nodes)} nodes are available: " + ", ".join(
            f"{n} {r}" for r, n in sorted(reasons.items())
        )
        booting = [n for n in self.nodes if not n.ready(now) and self._fits_empty(spec, n)]
        mine = [n for n in booting if n.nominated in (None, pod_name)]
        if mine:  # a node is on its way for this pod (the autoscaler counts pending pods)
            mine[0].nominated = pod_name
            return None, message + "; waiting for a new node to become Ready"
        for pool in self.pools:
            count = sum(1 for n in self.nodes if n.pool == pool.name and n.reclaimed_at is None)
            empty = Node("template", pool.name, pool.shape, 0.0)
            if pool.scales and count < pool.max_nodes and self._fits_empty(spec, empty):
                if now < self.stockout_until:
                    self.refused += 1
                    if self.refused == 1:
                        self.log(
                            f"node autoscaler: scale-up of pool {pool.name} for pod {pod_name} "
                            "failed: no capacity in the zone (a stockout), "
                            + (
                                "for ever"
                                if self.stockout_until == float("inf")
                                else f"for {self.stockout_until - now:.0f}s more"
                            )
                        )
                    return None, message + f"; scale-up of pool {pool.name} failed: no capacity"
                node = self._node(pool, ready_at=now + self.boot_s)
                node.nominated = pod_name
                self.nodes.append(node)
                self.added += 1
                self.max_nodes_seen[pool.name] = max(
                    self.max_nodes_seen.get(pool.name, 0), count + 1
                )
                self.log(
                    f"node autoscaler: pod {pod_name} is unschedulable ({message}); adding "
                    f"{node.name} to pool {pool.name} ({pool.shape.get('machine', '')}), "
                    f"Ready in {self.boot_s:g}s"
                )
                return None, message + f"; pod triggered scale-up of pool {pool.name}"
        full = [
            p.name
            for p in self.pools
            if p.scales and self._fits_empty(spec, Node("t", p.name, p.shape, 0))
        ]
        if full:
            return None, message + f"; pool(s) {', '.join(full)} at their max_nodes"
        return None, message

    def _fits_empty(self, spec: dict[str, Any], node: Node) -> bool:
        return not scheduling.why_not(spec, node.shape, self.reserve)

    def release(self, pod_name: str) -> None:
        """The pod is gone (deleted, or its attempt ended): its node, or the node on its way
        for it, is free for others."""
        for node in self.nodes:
            if node.nominated == pod_name:
                node.nominated = None
            if node.pods.pop(pod_name, None) is not None and not node.pods:
                node.empty_since = self.clock()

    def tick(self) -> None:
        """Remove GPU nodes that have held no pod for idle_s (the pool scales to zero)."""
        now = self.clock()
        for node in list(self.nodes):
            pool = next(p for p in self.pools if p.name == node.pool)
            if pool.scales and not node.pods and node.ready(now) and node.reclaimed_at is None:
                node.empty_since = node.empty_since or now
                if now - node.empty_since >= self.idle_s:
                    self.nodes.remove(node)
                    self.removed += 1
                    self.log(f"node autoscaler: removed {node.name}, empty for {self.idle_s:g}s")

    def count(self, pool: str) -> int:
        return sum(1 for n in self.nodes if n.pool == pool)

    def reclaimable(self) -> Node | None:
        """The Spot node a reclaim takes: the first Ready one that holds a pod."""
        now = self.clock()
        if not self.spot:
            return None
        return next(
            (
                n
                for n in self.nodes
                if n.pool == "t4" and n.ready(now) and n.pods and n.reclaimed_at is None
            ),
            None,
        )

    def reclaim(self, node: Node) -> list[str]:
        """The provider's notice: the node is cordoned; returns the pods on it."""
        node.reclaimed_at = self.clock()
        return list(node.pods)

    def remove(self, node: Node) -> None:
        """The notice is over: the VM is gone, and with it the node and whatever ran there."""
        self.nodes.remove(node)
        self.reclaimed.append(node.name)


def reclaim_schedule(seed: int, mean_s: float, count: int) -> list[float]:
    """A seeded schedule of Spot reclaims: `count` times, in seconds from the Ray job's start,
    the gaps between them drawn from an exponential of mean `mean_s` (reclaims as a Poisson
    process, the usual model of preemptions). The same seed gives the same schedule."""
    if not (math.isfinite(mean_s) and mean_s > 0) or count < 1:
        raise ValueError("a reclaim schedule needs a mean above 0 s and a count of 1 or more")
    rng = random.Random(seed)
    times, at = [], 0.0
    for _ in range(count):
        at += rng.expovariate(1.0 / mean_s)
        times.append(round(at, 3))
    return times
