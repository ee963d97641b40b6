"""Every variant (k8s/values/<variant>.yaml) placed on the nodes it declares, as the
kube-scheduler's filters would place it (jobs/kube/scheduling.py): each pod, with the containers
KubeRay adds, fits its node shape beside a stated system reserve; the head, the submitter
and the results reader never land on a T4 node; the workers land only there; the DNS rule
admits each cloud's resolvers; the claim asks for the variant's class."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
import yaml

from jobs.kube import scheduling
from tests.support.kuberay.pods import cluster_pods
from tests.support.manifests import (
    CLOUDS,
    K8S,
    VALUES,
    VARIANTS,
    docs,
    folder,
)

REQUIRED = {
    "variant",
    "title",
    "image_variant",
    "autoscaling",
    "kueue",
    "cold_start_s",
    "nodes",
    "head",
    "worker",
    "spot",
    "spot_node_selector",
    "spot_node_taints",
    "spot_reclaim",
    "storage",
    "dns_ip_blocks",
    "registry",
    "client_image",
    "prices",
    "env_vars",
    "deadline_s",
}


def node(variant: str, role: str) -> dict[str, Any]:
    return VALUES[variant]["nodes"][role]


def reserve(variant: str) -> dict[str, Any]:
    return VALUES[variant]["nodes"]["system_reserve"]


def ray_docs(variant: str) -> list[tuple[str, dict[str, Any]]]:
    paths = [folder(variant) / "raycluster.yaml", *sorted(folder(variant).glob("rayjob-*.yaml"))]
    return [(p.name, docs(p)[0]) for p in paths]


def reader(variant: str) -> dict[str, Any]:
    return docs(folder(variant) / "results-reader.yaml")[0]["spec"]


CASES = [(v, name, doc) for v in VARIANTS for name, doc in ray_docs(v)]
CASE_IDS = [f"{v}/{name}" for v, name, _ in CASES]
CLOUD_CASES = [c for c in CASES if c[0] in CLOUDS]
CLOUD_IDS = [f"{v}/{name}" for v, name, _ in CLOUD_CASES]
SINGLE_NODE = [v for v in VARIANTS if v not in CLOUDS]  # kind: one node holds every pod


@pytest.mark.parametrize("variant", VARIANTS)
def test_values_files_name_everything_a_cloud_decides(variant: str) -> None:
    v = VALUES[variant]
    assert set(v) >= REQUIRED, REQUIRED - set(v)
    assert v["variant"] == variant
    for role in ("head", "t4"):
        assert {"machine", "allocatable", "labels", "taints"} <= set(node(variant, role))
    assert {"on_demand", "spot"} <= set(v["prices"]["t4_node"]) and v["prices"]["source"]


@pytest.mark.parametrize(("variant", "name", "doc"), CASES, ids=CASE_IDS)
def test_every_pod_fits_its_node_beside_the_system_reserve(variant, name, doc) -> None:
    pods = cluster_pods(doc)
    head, t4 = node(variant, "head"), node(variant, "t4")
    for role, pod in pods.items():
        target = t4 if role.startswith("worker") else head
        assert scheduling.why_not(pod["spec"], target, reserve(variant)) == [], (role, target)
    assert scheduling.why_not(reader(variant), head, reserve(variant)) == []


@pytest.mark.parametrize(("variant", "name", "doc"), CLOUD_CASES, ids=CLOUD_IDS)
def test_the_head_node_holds_everything_that_runs_on_it_at_once(variant, name, doc) -> None:
    """The head's node is the cluster's one CPU node: the head with its sidecar, the
    submitter, the results reader and the cluster's own pods (nodes.head.system_pods) all
    run there at once. A submitter that cannot be scheduled once the RayJob is Running is
    caught by nothing but activeDeadlineSeconds (EKS's m5.large: 2,000m asked of 1,930m)."""
    on_head = [p["spec"] for role, p in cluster_pods(doc).items() if not role.startswith("worker")]
    head = node(variant, "head")
    for key in ("cpu", "memory"):
        asked = sum(scheduling.pod_requests(spec).get(key, 0.0) for spec in on_head)
        asked += scheduling.pod_requests(reader(variant)).get(key, 0.0)
        asked += scheduling.quantity(head["system_pods"][key])
        assert asked <= scheduling.quantity(head["allocatable"][key]), (key, asked, head)


@pytest.mark.parametrize(("variant", "name", "doc"), CLOUD_CASES, ids=CLOUD_IDS)
def test_the_head_submitter_and_reader_never_land_on_a_t4_node(variant, name, doc) -> None:
    t4 = node(variant, "t4")
    specs = {role: p["spec"] for role, p in cluster_pods(doc).items()} | {"reader": reader(variant)}
    for role, spec in specs.items():
        reasons = scheduling.why_not(spec, t4)
        if role.startswith("worker"):
            assert reasons == [], role
            # Only on T4 nodes: the head's node is no match for a worker.
            assert scheduling.why_not(spec, node(variant, "head")), role
        else:
            assert reasons, f"{role} could be scheduled on a {t4['machine']} node"
    # Even with the GPU taint gone (EKS taints only what the user's node group says), the
    # head's node affinity alone keeps it off the T4 nodes.
    untainted = {**t4, "taints": []}
    for role in ("head", "submitter"):
        if role in specs:
            assert not scheduling.selects(specs[role], untainted["labels"]), role


@pytest.mark.parametrize("variant", SINGLE_NODE)
def test_a_stage_fits_on_kinds_single_node_together(variant: str) -> None:
    node_shape = node(variant, "head")
    assert node_shape.items() <= node(variant, "t4").items()  # one node, both roles
    for name, doc in ray_docs(variant):
        pods = cluster_pods(doc)
        taken: dict[str, float] = {k: scheduling.quantity(q) for k, q in reserve(variant).items()}
        for role, pod in pods.items():
            replicas = 1
            if role.startswith("worker"):
                group = next(
                    g
                    for g in (doc["spec"].get("rayClusterSpec") or doc["spec"])["workerGroupSpecs"]
                    if role == f"worker-{g['groupName']}"
                )
                replicas = group["replicas"]
            for _ in range(replicas):
                assert scheduling.why_not(pod["spec"], node_shape, taken) == [], (name, role)
                for key, amount in scheduling.pod_requests(pod["spec"]).items():
                    taken[key] = taken.get(key, 0.0) + amount


def test_the_checks_can_fail() -> None:
    (doc,) = docs(folder("eks") / "rayjob-tune.yaml")
    head = cluster_pods(doc)["head"]["spec"]
    # A head of nearly a whole node (3.6 CPU / 13 GiB, no placement) on EKS's m5.xlarge,
    # beside the system reserve ...
    big = copy.deepcopy(head)
    big["containers"][0]["resources"] = {"requests": {"cpu": "3600m", "memory": "13Gi"}}
    reasons = scheduling.why_not(big, node("eks", "head"), reserve("eks"))
    assert any(r.startswith("Insufficient cpu") for r in reasons)
    assert any(r.startswith("Insufficient memory") for r in reasons)
    # ... and, without its affinity, on an untainted g4dn.
    del big["affinity"]
    assert scheduling.why_not(big, {**node("eks", "t4"), "taints": []}) == []
    # A worker without the GPU toleration stays off GKE's tainted T4 nodes.
    (doc,) = docs(folder("gke") / "rayjob-tune.yaml")
    worker = copy.deepcopy(cluster_pods(doc)["worker-t4"]["spec"])
    worker["tolerations"] = []
    assert scheduling.why_not(worker, node("gke", "t4")) == [
        "node(s) had untolerated taint {nvidia.com/gpu=present:NoSchedule}"
    ]
    # Two T4 pods never share a one-GPU node.
    full = {"nvidia.com/gpu": "1", "cpu": "0", "memory": "0"}
    assert (
        "Insufficient nvidia.com/gpu"
        in scheduling.why_not(
            worker
            | {
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ]
            },
            node("gke", "t4"),
            full,
        )[0]
    )


@pytest.mark.parametrize("variant", CLOUDS)
def test_spot_pools_are_a_setting_whose_taints_are_tolerated(variant: str) -> None:
    v = VALUES[variant]
    assert v["spot"] is False and v["spot_node_selector"]
    (doc,) = docs(folder(variant) / "raycluster.yaml")
    worker = cluster_pods(doc)["worker-t4"]["spec"]
    spot_node = copy.deepcopy(node(variant, "t4"))
    spot_node["labels"] |= v["spot_node_selector"]
    # The Spot pool's own taints, and GKE Autopilot's (Standard adds one only if asked).
    autopilot = [
        {"key": k, "value": x, "effect": "NoSchedule"}
        for k, x in v["spot_node_selector"].items()
        if k == "cloud.google.com/gke-spot"
    ]
    spot_node["taints"] = [*spot_node["taints"], *v["spot_node_taints"], *autopilot]
    assert scheduling.why_not(worker, spot_node) == []
    # A reclaim's terms (the podman runner plays them): the provider's notice, and what the
    # pods get of it (null: their own terminationGracePeriodSeconds).
    terms = v["spot_reclaim"]
    assert terms["notice_s"] > 0 and (
        terms["grace_s"] is None or terms["grace_s"] <= terms["notice_s"]
    )


def _admits(policy: dict[str, Any], address: str, port: int, protocol: str) -> bool:
    """Does some egress rule let a pod reach address:port (an ipBlock peer; pod-selector
    peers are the kube-dns pods, checked apart)?"""
    for rule in policy["spec"].get("egress", []):
        ports = rule.get("ports")
        if ports and not any(p["port"] == port and p["protocol"] == protocol for p in ports):
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block and ipaddress.ip_address(address) in ipaddress.ip_network(block["cidr"]):
                return True
    return False


# What each cloud's pods send DNS queries to, besides the kube-dns/CoreDNS pods.
RESOLVERS = {
    "gke": ["169.254.20.10", "169.254.169.254"],  # NodeLocal DNSCache; Cloud DNS (metadata)
    "aks": ["169.254.10.10", "169.254.10.11"],  # LocalDNS
    "eks": [],
    "kind": [],
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_dns_rule_admits_the_clouds_resolvers(variant: str) -> None:
    policies = {d["metadata"]["name"]: d for d in docs(folder(variant) / "networkpolicy.yaml")}
    policy = policies["ray-tune-k8s"]
    dns = [
        rule
        for rule in policy["spec"]["egress"]
        if any(p["port"] == 53 for p in rule.get("ports", []))
    ]
    (rule,) = dns
    assert {"protocol": "UDP", "port": 53} in rule["ports"]
    selectors = [p["podSelector"]["matchLabels"] for p in rule["to"] if "podSelector" in p]
    assert selectors == [{"k8s-app": "kube-dns"}]
    for address in RESOLVERS[variant]:
        assert _admits(policy, address, 53, "UDP"), address
        assert not _admits(policy, address, 80, "TCP"), f"{address}:80 must stay closed"
    assert not _admits(policy, "8.8.8.8", 53, "UDP")  # no resolver outside the cluster


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_claim_asks_for_the_variants_class(variant: str) -> None:
    found = {d["kind"]: d for d in docs(folder(variant) / "storage.yaml")}
    claim = found["PersistentVolumeClaim"]
    storage = VALUES[variant]["storage"]
    assert claim["spec"]["storageClassName"] == storage["class"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["name"] == "ray-tune-cluster-storage"
    if storage["storage_class"]:
        assert found["StorageClass"]["metadata"]["name"] == storage["class"]
    if variant in CLOUDS:
        assert storage["class"] not in ("", "standard", "standard-rwo", "gp2", "managed-csi")


def test_every_claim_mount_names_the_claim_the_storage_file_creates() -> None:
    for variant in VARIANTS:
        claim = {d["kind"]: d for d in docs(folder(variant) / "storage.yaml")}
        name = claim["PersistentVolumeClaim"]["metadata"]["name"]
        text = (folder(variant) / "raycluster.yaml").read_text()
        assert f"claimName: {name}" in text
        assert (
            yaml.safe_load((folder(variant) / "results-reader.yaml").read_text())["spec"][
                "volumes"
            ][0]["persistentVolumeClaim"]["claimName"]
            == name
        )


def test_the_readme_cloud_table_states_each_nodes_allocatable() -> None:
    # k8s/README.md's per-cloud table: "<cpu>, <memory in GiB> GiB" for the T4 and the head node.
    readme = (K8S / "README.md").read_text()
    rows = {row.split("|")[1].strip(): row for row in readme.splitlines() if row.startswith("| ")}
    for role, row_name in (("t4", "T4 node"), ("head", "Head node")):
        cells = [c.strip() for c in rows[row_name].split("|")[2:5]]
        for cloud, cell in zip(("gke", "eks", "aks"), cells, strict=True):  # its columns
            allocatable = node(cloud, role)["allocatable"]
            gib = scheduling.quantity(allocatable["memory"]) / 1024**3
            assert f"{allocatable['cpu']}" in cell and f"{gib:.1f} GiB" in cell, (cloud, cell)
