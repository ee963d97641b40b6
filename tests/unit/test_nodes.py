"""tests/support/runner/nodes.py, the podman runner's nodes: pods placed as the scheduler
would place them on a variant's declared shapes, GPU pools grown from zero for pending pods
up to their max_nodes and shrunk after idle_s; kind's one node holding everything."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.support.kuberay.pods import cluster_pods
from tests.support.manifests import CLOUDS, VALUES, docs, folder, spot_render
from tests.support.runner.nodes import Cluster, reclaim_schedule


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


@pytest.mark.parametrize("variant", CLOUDS)
def test_a_spot_render_schedules_only_on_a_spot_pool(variant: str) -> None:
    text, spot_values = spot_render(variant, "checkpoint")
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    worker = cluster_pods(doc)["worker-t4"]["spec"]
    for key, value in spot_values["spot_node_selector"].items():
        assert worker["nodeSelector"][key] == value  # the render asks for Spot nodes
    # ... and tells the driver and trials so (SPOT: a checkpoint every epoch, more retries).
    env = {e["name"]: e.get("value") for e in worker["containers"][0]["env"]}
    assert env["SPOT"] == "true"
    committed = pods(variant, "checkpoint")["worker-t4"]["containers"][0]["env"]
    assert "SPOT" not in {e["name"] for e in committed}  # spot: false as committed
    on_demand = cluster(variant, Clock(), [])
    node, reason = on_demand.place("w1", worker)
    assert node is None and "scale-up" not in reason  # an on-demand pool never fits it
    clock, lines = Clock(), []
    spot = Cluster(spot_values, boot_s=30, idle_s=60, clock=clock, log=lines.append)
    node, reason = spot.place("w1", worker)
    assert node is None and "triggered scale-up of pool t4" in reason
    clock.now = 31
    node, _ = spot.place("w1", worker)
    assert (
        node is not None
        and node.shape["labels"].items() >= spot_values["spot_node_selector"].items()
    )
    for taint in spot_values["spot_node_taints"]:  # AKS taints its Spot nodes: tolerated
        assert taint in node.shape["taints"]


def test_a_reclaimed_spot_node_is_cordoned_then_gone_and_its_pod_lands_on_a_new_node() -> None:
    text, spot_values = spot_render("gke", "checkpoint")
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    worker = cluster_pods(doc)["worker-t4"]["spec"]
    clock, lines = Clock(), []
    nodes = Cluster(spot_values, boot_s=30, idle_s=60, clock=clock, log=lines.append)
    assert nodes.reclaimable() is None  # no Spot node holds a pod yet
    nodes.place("w1", worker)
    clock.now = 31
    first, _ = nodes.place("w1", worker)
    assert first is not None and nodes.reclaimable() is first
    assert nodes.reclaim(first) == ["w1"]
    assert nodes.reclaimable() is None  # one notice per node
    # The pod's replacement (w2) cannot land on the cordoned node: the pool adds one for it,
    # not counting the node on its way out, while the node is still listed.
    node, reason = nodes.place("w2", worker)
    assert node is None and "1 node(s) were unschedulable" in reason
    assert "triggered scale-up of pool t4" in reason and nodes.count("t4") == 2
    nodes.release("w1")
    clock.now = 45
    nodes.tick()  # empty, but reclaimed: the idle scale-down leaves it to the notice's end
    nodes.remove(first)
    assert nodes.reclaimed == [first.name] and nodes.removed == 0 and nodes.count("t4") == 1
    clock.now = 62
    second, _ = nodes.place("w2", worker)
    assert second is not None and second.name != first.name and nodes.added == 2


def test_an_on_demand_pool_has_nothing_to_reclaim() -> None:
    clock = Clock()
    nodes = cluster("gke", clock, [])
    worker = pods("gke")["worker-t4"]
    nodes.place("w1", worker)
    clock.now = 31
    assert nodes.place("w1", worker)[0] is not None and nodes.reclaimable() is None


def test_a_stockout_keeps_the_pod_pending_until_it_lifts() -> None:
    clock, lines = Clock(), []
    nodes = Cluster(
        VALUES["gke"], boot_s=30, idle_s=60, stockout_s=60, clock=clock, log=lines.append
    )
    worker = pods("gke")["worker-t4"]
    for now in (0, 20, 59):
        clock.now = now
        node, reason = nodes.place("w1", worker)
        assert node is None and reason.endswith("scale-up of pool t4 failed: no capacity")
    assert nodes.count("t4") == 0 and nodes.refused == 3
    assert len([x for x in lines if "(a stockout), for 60s more" in x]) == 1  # said once
    clock.now = 60  # lifted: the pool adds the node, Ready after boot_s
    assert "triggered scale-up of pool t4" in nodes.place("w1", worker)[1]
    clock.now = 91
    assert nodes.place("w1", worker)[0] is not None and nodes.added == 1


def test_a_permanent_stockout_never_adds_a_node() -> None:
    clock, lines = Clock(), []
    nodes = Cluster(VALUES["gke"], stockout_s=float("inf"), clock=clock, log=lines.append)
    clock.now = 1e6
    assert nodes.place("w1", pods("gke")["worker-t4"])[0] is None and nodes.added == 0
    assert "(a stockout), for ever" in lines[-1]


def test_a_seeded_reclaim_schedule_is_the_same_for_the_same_seed() -> None:
    """--reclaim-schedule SEED:MEAN_S:COUNT: reclaims as a Poisson process, reproducible."""
    first = reclaim_schedule(7, 60.0, 50)
    assert first == reclaim_schedule(7, 60.0, 50) != reclaim_schedule(8, 60.0, 50)
    assert first == sorted(first) and first[0] > 0 and len(first) == 50
    gaps = [b - a for a, b in zip([0.0, *first], first, strict=False)]
    assert 30 < sum(gaps) / len(gaps) < 120  # about the mean asked for (seed 7: fixed)
    for mean in (0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="mean above 0"):
            reclaim_schedule(7, mean, 3)
