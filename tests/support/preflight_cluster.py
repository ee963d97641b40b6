"""Clusters for `make preflight`'s tests, as the stand-in kubectl serves them: a healthy one per
variant from its values file's node shapes, and the pieces a test breaks one at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.kuberay.fake_kubectl import environment
from tests.support.runs import REPO

K8S = REPO / "k8s"
CLAIM = "ray-tune-cluster-storage"
POD = "pod/ray-tune-preflight"
CRD = {"spec": {"versions": [{"name": "v1", "served": True}]}}
T4_LABEL = "cloud.google.com/gke-accelerator=nvidia-tesla-t4"
HEAD_SHAPE = "e2-standard-4 (3920m CPU, 13300Mi allocatable)"


def values(variant: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / "values" / f"{variant}.yaml").read_text())


def folder(variant: str) -> Path:
    return K8S if values(variant).get("default") else K8S / variant


def head_template(variant: str) -> dict[str, Any]:
    cluster = yaml.safe_load((folder(variant) / "raycluster.yaml").read_text())
    return cluster["spec"]["headGroupSpec"]["template"]


def node(variant: str, role: str, name: str, **changes: Any) -> dict[str, Any]:
    """A node of the shape k8s/values/<variant>.yaml declares for `role` (head or t4)."""
    shape = values(variant)["nodes"][role]
    labels = changes.get("labels", shape["labels"])
    taints = changes.get("taints", shape["taints"])
    allocatable = shape["allocatable"] | changes.get("allocatable", {})
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"allocatable": allocatable},
    }


def deployment(namespace: str, name: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"template": {"spec": {"containers": [{"image": image}]}}},
    }


OPERATOR = deployment(
    "kuberay-system",
    "kuberay-operator",
    "quay.io/kuberay/operator:v1.7.0",
    {"app.kubernetes.io/name": "kuberay-operator"},
)


def pvc(klass: str, phase: str = "Bound", modes: tuple[str, ...] = ("ReadWriteMany",)) -> dict:
    status: dict[str, Any] = {"phase": phase}
    if phase == "Bound":
        status["accessModes"] = list(modes)
    return {"spec": {"accessModes": list(modes), "storageClassName": klass}, "status": status}


def daemonset(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"template": {"spec": spec}},
    }


# NVIDIA's device plugin chart at the version make device-plugin pins (its values.yaml and
# Chart.yaml kept beside the project, like the CRDs).
CHART = REPO / "tests" / "support" / "charts" / "nvidia-device-plugin-0.20.0"


def helm_merge(base: Any, over: Any) -> Any:
    """Helm's coalescing of a values file onto a chart's: maps merge key by key, anything
    else (lists included) is replaced whole."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: helm_merge(base[k], v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


def chart_plugin(over: dict[str, Any]) -> dict[str, Any]:
    """The chart's DaemonSet as installed with `over` (templates/daemonset-device-plugin.yml
    passes affinity, nodeSelector and tolerations through)."""
    v = helm_merge(yaml.safe_load((CHART / "values.yaml").read_text()), over)
    spec = {k: v[k] for k in ("affinity", "nodeSelector", "tolerations") if v.get(k)}
    return daemonset("nvidia-device-plugin", "nvdp-nvidia-device-plugin", spec)


# Each cloud's device plugin as it runs there: GKE's own (container-engine-accelerators
# cmd/nvidia_gpu/device-plugin.yaml), eksctl's (pkg/addons/assets/nvidia-device-plugin.yaml),
# and on AKS NVIDIA's chart with the values make device-plugin installs it with.
PLUGINS = {
    "gke": daemonset(
        "kube-system",
        "nvidia-gpu-device-plugin",
        {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "cloud.google.com/gke-accelerator",
                                        "operator": "Exists",
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "tolerations": [
                {"operator": "Exists", "effect": "NoExecute"},
                {"operator": "Exists", "effect": "NoSchedule"},
            ],
        },
    ),
    "eks": daemonset(
        "kube-system",
        "nvidia-device-plugin-daemonset",
        {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    ),
    "aks": chart_plugin(yaml.safe_load((K8S / "aks" / "device-plugin.values.yaml").read_text())),
}


def healthy(variant: str = "gke") -> dict[str, Any]:
    return {
        "crd/rayjobs.ray.io": CRD,
        "crd/rayclusters.ray.io": CRD,
        "deployments": {"items": [OPERATOR]},
        "daemonsets": {"items": [PLUGINS[variant]] if variant in PLUGINS else []},
        f"pvc/{CLAIM}": pvc(values(variant)["storage"]["class"]),
        "nodes": {"items": [node(variant, "head", "cpu-a"), node(variant, "t4", "t4-a")]},
        POD: {"status": {"phase": "Succeeded"}},
        "pod_logs": "1000",
    }


def changed(variant: str = "gke", **objects: Any) -> dict[str, Any]:
    """The healthy cluster with some objects replaced (a key `a__b` stands for `a/b`)."""
    out = healthy(variant)
    for key, value in objects.items():
        out[key.replace("__", "/")] = value
    return out


def preflight(
    tmp_path: Path, objects: dict[str, Any], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "objects.json").write_text(json.dumps(objects))
    return subprocess.run(
        [sys.executable, "-m", "jobs.kube.preflight", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(
            tmp_path,
            **{
                "FAKE_KUBECTL_OBJECTS": str(tmp_path / "objects.json"),
                "PREFLIGHT_POD_TIMEOUT_S": "3",
            }
            | env,
        ),
    )


def problems(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("problem: ")]


def applied(tmp_path: Path) -> dict[str, Any] | None:
    path = tmp_path / "state.applied"
    return json.loads(path.read_text()) if path.exists() else None


def gke_nodes(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(nodes)}
