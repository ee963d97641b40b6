"""tests/e2e/nodes.py, the podman runner's nodes: pods placed as the scheduler would place
them on a variant's declared shapes, GPU pools grown from zero for pending pods up to their
max_nodes and shrunk after idle_s; kind's one node holding everything."""

from __future__ import annotations

import copy

from tests.e2e.nodes import Cluster
from tests.support.kuberay.pods import cluster_pods
from tests.support.manifests import VALUES, docs, folder


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pods(variant: str, stage: str = "asha") -> dict:
    (doc,) = docs(folder(variant) / f"rayjob-{stage}.yaml")
    return {role: p["spec"] for role, p in cluster_pods(doc).items()}


def cluster(variant: str, clock: Clock, lines: list[str]) -> Cluster:
    return Cluster(VALUES[variant], boot_s=30, idle_s=60, clock=clock, log=lines.append)


def test_the_gpu_pool_grows_from_zero_for_a_pending_worker_and_shrinks_when_idle() -> None:
    clock, lines = Clock(), []
    nodes = cluster("gke", clock, lines)
    spec = pods("gke")
    assert nodes.place("head", spec["head"])[0].pool == "head"  # the CPU node exists already
    assert nodes.place("submitter", spec["submitter"])[0].pool == "head"
    assert nodes.count("t4") == 0
    node, reason = nodes.place("w1", spec["worker-t4"])
    assert node is None and "triggered scale-up of pool t4" in reason
    assert "didn't match Pod's node affinity/selector" in reason  # the head's node is no match
    assert nodes.count("t4") == 1 and "adding t4-node-" in lines[-1]
    node, reason = nodes.place("w1", spec["worker-t4"])
    assert node is None and "waiting for a new node" in reason  # booting: no second node
    assert nodes.count("t4") == 1
    clock.now = 31
    node, _ = nodes.place("w1", spec["worker-t4"])
    assert node is not None and node.pool == "t4"
    nodes.release("w1")
    clock.now = 40
    nodes.tick()
    assert nodes.count("t4") == 1  # idle for less than idle_s
    clock.now = 101
    nodes.tick()
    assert nodes.count("t4") == 0 and nodes.removed == 1


def test_one_gpu_pod_per_t4_node_and_never_above_max_nodes() -> None:
    clock, lines = Clock(), []
    nodes = cluster("eks", clock, lines)
    worker = pods("eks")["worker-t4"]
    limit = VALUES["eks"]["nodes"]["t4"]["max_nodes"]
    for i in range(limit + 2):
        nodes.place(f"w{i}", worker)
    assert nodes.count("t4") == limit
    clock.now = 31
    placed = [nodes.place(f"w{i}", worker)[0] for i in range(limit + 2)]
    assert len({n.name for n in placed if n}) == limit  # one GPU pod per node
    node, reason = nodes.place("extra", worker)
    assert node is None and "Insufficient nvidia.com/gpu" in reason
    assert "at their max_nodes" in reason


def test_a_head_too_big_for_every_node_stays_pending_with_the_reason() -> None:
    clock, lines = Clock(), []
    nodes = cluster("gke", clock, lines)
    head = copy.deepcopy(pods("gke")["head"])
    head["containers"][0]["resources"] = {"requests": {"cpu": "64", "memory": "1Ti"}}
    node, reason = nodes.place("head", head)
    assert node is None
    assert reason.startswith("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory")
    assert nodes.count("t4") == 0, "no pool scales for a pod no node of it could hold"


def test_a_t4_selector_that_matches_no_pool_adds_no_node() -> None:
    clock, lines = Clock(), []
    nodes = cluster("gke", clock, lines)
    worker = copy.deepcopy(pods("gke")["worker-t4"])
    worker["nodeSelector"] = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    node, reason = nodes.place("w", worker)
    assert node is None and nodes.count("t4") == 0
    assert "didn't match Pod's node affinity/selector" in reason


def test_kind_is_one_node_holding_a_whole_stage() -> None:
    clock, lines = Clock(), []
    nodes = cluster("kind", clock, lines)
    spec = pods("kind", "train")
    placed = [nodes.place(role, p)[0] for role, p in spec.items()]
    placed.append(nodes.place("worker-2", spec["worker-t4"])[0])  # train runs 2 workers
    assert all(placed) and {n.name for n in placed} == {"head-node-1"}
    assert len(nodes.nodes) == 1
