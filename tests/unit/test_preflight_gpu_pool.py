"""jobs/kube/preflight.py on the T4 pool's own services: a device plugin that must run on the
pool's nodes (at zero nodes too, from the declared node template) and a node autoscaler that
must be able to scale it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.preflight_cluster import (
    K8S,
    OPERATOR,
    PLUGINS,
    changed,
    chart_plugin,
    deployment,
    gke_nodes,
    healthy,
    node,
    preflight,
    problems,
)

# --- the device plugin ---------------------------------------------------------------------

# The walk's AKS install before make device-plugin: the chart's affinity, the pool's taint
# tolerated.
WALK_AKS_PLUGIN = chart_plugin(
    {
        "tolerations": [
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        ]
    }
)
AKS_T4 = "kubernetes.azure.com/accelerator=nvidia"


def aks_at_zero(**objects: Any) -> dict[str, Any]:
    """AKS with no T4 node yet, its autoscaler about (AKS's is in the control plane; the
    status ConfigMap is what preflight sees)."""
    return changed(
        "aks",
        nodes=gke_nodes(node("aks", "head", "cpu-a")),
        **{"configmap__cluster-autoscaler-status": {"data": {"status": "Health: Healthy"}}},
        **objects,
    )


@pytest.mark.parametrize("variant", ["gke", "eks", "aks"])
@pytest.mark.parametrize("t4_nodes", [1, 0])
def test_each_clouds_device_plugin_runs_on_its_t4_nodes(
    tmp_path: Path, variant: str, t4_nodes: int
) -> None:
    objects = healthy(variant)
    objects["configmap/cluster-autoscaler-status"] = {"data": {"status": "Health: Healthy"}}
    if not t4_nodes:
        objects["nodes"] = gke_nodes(node(variant, "head", "cpu-a"))
    proc = preflight(tmp_path, objects, CLOUD=variant)
    assert proc.returncode == 0, proc.stdout
    where = (
        "T4 node(s) t4-a"
        if t4_nodes
        else f"the T4 pool's nodes as k8s/values/{variant}.yaml declares them (none yet)"
    )
    name = PLUGINS[variant]["metadata"]
    assert (
        f"ok: DaemonSet {name['namespace']}/{name['name']} (the device plugin) runs on {where}"
    ) in proc.stdout.splitlines()


@pytest.mark.parametrize("t4_nodes", [1, 0])
def test_the_charts_own_affinity_never_admits_an_aks_t4_node(tmp_path: Path, t4_nodes: int) -> None:
    """NVIDIA's chart admits only nodes labelled by Node Feature Discovery or
    nvidia.com/gpu.present=true; AKS sets neither, so the walk's install never ran there."""
    objects = aks_at_zero(daemonsets={"items": [WALK_AKS_PLUGIN]})
    if t4_nodes:
        objects["nodes"]["items"].append(node("aks", "t4", "t4-a"))
    proc = preflight(tmp_path, objects, CLOUD="aks")
    assert proc.returncode == 1
    (problem,) = problems(proc)
    assert (
        "DaemonSet nvidia-device-plugin/nvdp-nvidia-device-plugin: its node affinity needs "
        "feature.node.kubernetes.io/pci-10de.present in (true) or "
        "feature.node.kubernetes.io/cpu-model.vendor_id in (NVIDIA) or "
        f"nvidia.com/gpu.present in (true) (the node's labels: {AKS_T4}, "
    ) in problem
    assert "(fix: make device-plugin CLOUD=aks (the pinned chart with " in problem


def test_a_device_plugin_that_does_not_tolerate_the_pools_taint_is_named(tmp_path: Path) -> None:
    values = yaml.safe_load((K8S / "aks" / "device-plugin.values.yaml").read_text())
    values.pop("tolerations")  # the chart's own: CriticalAddonsOnly, nvidia.com/gpu
    proc = preflight(
        tmp_path, aks_at_zero(daemonsets={"items": [chart_plugin(values)]}), CLOUD="aks"
    )
    (problem,) = problems(proc)
    assert "nvdp-nvidia-device-plugin: it does not tolerate sku=gpu:NoSchedule" in problem


def test_aks_without_a_device_plugin_is_a_problem_before_any_node(tmp_path: Path) -> None:
    proc = preflight(tmp_path, aks_at_zero(daemonsets={"items": []}), CLOUD="aks")
    (problem,) = problems(proc)
    assert problem.startswith(
        "problem: no NVIDIA device plugin DaemonSet: AKS installs none, so T4 nodes would "
        "offer no nvidia.com/gpu (fix: make device-plugin CLOUD=aks"
    )


# --- the node autoscaler -------------------------------------------------------------------

AWS_AUTOSCALER = deployment(
    "kube-system",
    "cluster-autoscaler-aws-cluster-autoscaler",
    "registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.0",
    {"app.kubernetes.io/name": "aws-cluster-autoscaler"},
)
# What Cluster Autoscaler logs when the node's instance role, not its own, is asked to scale
# (the EKS walk's old withAddonPolicies on the t4 group: the pod runs on the head's node).
ACCESS_DENIED = (
    "E1207 09:00:00.000000 1 aws_manager.go:262] Failed to set desired capacity: "
    "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/eksctl-ray-tune-nodegroup-head-"
    "NodeInstanceRole/i-0abc is not authorized to perform: autoscaling:SetDesiredCapacity"
)


def test_an_autoscaler_denied_by_the_cloud_is_named_before_any_gpu_hour(tmp_path: Path) -> None:
    objects = changed(
        "eks",
        nodes=gke_nodes(node("eks", "head", "m5-a")),
        deployments={"items": [OPERATOR, AWS_AUTOSCALER]},
        **{"logs/deploy/cluster-autoscaler-aws-cluster-autoscaler": ACCESS_DENIED},
    )
    proc = preflight(tmp_path, objects, CLOUD="eks")
    assert proc.returncode == 1
    (problem,) = problems(proc)
    assert problem.startswith(
        "problem: the node autoscaler cannot scale the T4 pool (Deployment "
        "kube-system/cluster-autoscaler-aws-cluster-autoscaler logs: E1207"
    )
    assert "is not authorized to perform: autoscaling:SetDesiredCapacity" in problem
    assert "wellKnownPolicies.autoScaler" in problem
    # Its status ConfigMap says so too, where it has one.
    objects["configmap/cluster-autoscaler-status"] = {
        "data": {
            "status": "nodeGroups:\n- name: eks-t4\n  health:\n    status: Unhealthy\n"
            "  scaleUp:\n    status: Backoff\n"
        }
    }
    (problem,) = problems(preflight(tmp_path, objects, CLOUD="eks"))
    assert "its status ConfigMap says: status: Unhealthy; status: Backoff" in problem
    # Once allowed (the log moves on), nothing is said.
    objects["logs/deploy/cluster-autoscaler-aws-cluster-autoscaler"] = "I1207 scale-up: ok"
    objects["configmap/cluster-autoscaler-status"] = {"data": {"status": "Health: Healthy"}}
    proc = preflight(tmp_path, objects, CLOUD="eks")
    assert proc.returncode == 0, proc.stdout
