"""Before spending GPU hours: does this Kubernetes cluster have what the RayJobs need?

    CLOUD=eks python -m jobs.kube.preflight     # make preflight TARGET=k8s CLOUD=eks

The variant comes from CLOUD (k8s/values/<CLOUD>.yaml; unset: the one with `default: true`),
its manifests from where jobs/kube/render.py writes them (k8s/ for the default, else k8s/<CLOUD>/).
One line per check, `ok: ...` or `problem: ... (fix: ...)`; exit 1 on any problem:
- the KubeRay operator: the RayJob and RayCluster CRDs serve ray.io/v1, and the operator's
  Deployment runs the version the manifests are written for;
- the head: a node that the head's node affinity admits, whose taints it tolerates and
  whose allocatable CPU and memory, less what the pods already on it request, hold the head
  pod (with KubeRay's autoscaler sidecar) and the RayJob's submitter beside it;
- the T4 pool: the nodes that match the workers' nodeSelector, tolerated taints, allocatable
  nvidia.com/gpu (else: is a device plugin installed?); none yet is fine only where a node
  autoscaler (Cluster Autoscaler or Karpenter) can add one;
- the device plugin: a DaemonSet whose node affinity and tolerations admit the T4 nodes (at
  zero nodes, the node the values file declares for the pool); on a cloud that installs none
  (AKS), one must exist;
- the node autoscaler: no node group Unhealthy or backing off in its status ConfigMap, no
  denied cloud call (AccessDenied, ...) in a cluster-autoscaler Deployment's recent log;
- the claim: exists, of the variant's storage class, ReadWriteMany, Bound (or Pending on a
  class that binds on first consumer: the write pod binds it);
- a pod placed like the head, of the head's image, writes to the volume as uid 1000 with the
  pods' fsGroup: an image that cannot be pulled and a pod that cannot be scheduled are
  named as such. The pod is deleted at the end.
PREFLIGHT_POD_TIMEOUT_S (default 900: a cold pull of a multi-GB image) bounds the wait for
that pod. Needs PyYAML and kubectl only (the scheduler's rules: jobs/kube/scheduling.py).
Bad arguments or an unknown CLOUD: one `error:` line, exit 2.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from jobs.kube import scheduling  # the kube-scheduler's filters, stdlib only

K8S = Path(__file__).resolve().parents[2] / "k8s"

VALUES = K8S / "values"
KUBECTL = os.environ.get("KUBECTL", "kubectl")
KUBERAY_VERSION = os.environ.get("KUBERAY_VERSION", "1.7.0")
POD_TIMEOUT_S = float(os.environ.get("PREFLIGHT_POD_TIMEOUT_S", "900"))
POLL_S = 2.0
POD = "ray-tune-preflight"
STORAGE = "/mnt/cluster_storage"
GPU = "nvidia.com/gpu"
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName")
# KubeRay's autoscaler sidecar when autoscalerOptions.resources is unset
# (BuildAutoscalerContainer).
AUTOSCALER_DEFAULT = {"cpu": "500m", "memory": "512Mi"}
MANIFESTS = ("raycluster.yaml", "storage.yaml")


class UsageError(Exception):
    """Bad arguments, an unknown CLOUD or a variant without manifests: `error:`, exit 2."""


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=stdin)


def get(*args: str) -> dict[str, Any] | None:
    proc = kubectl("get", *args, "-o", "json")
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def items(*args: str) -> list[dict[str, Any]]:
    return (get(*args) or {}).get("items", [])


@cache
def deployments() -> tuple[dict[str, Any], ...]:
    """Every Deployment in the cluster: the operator's, a cluster-autoscaler, a GPU operator."""
    return tuple(items("deployments", "-A"))


def _where(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


class Report:
    def __init__(self) -> None:
        self.problems = 0

    def ok(self, text: str) -> None:
        print(f"ok: {text}", flush=True)

    def problem(self, text: str, fix: str) -> None:
        self.problems += 1
        print(f"problem: {text} (fix: {fix})", flush=True)


# --- the variant --------------------------------------------------------------------------


class Variant:
    """k8s/values/<name>.yaml and the manifests rendered from it (PyYAML only: no Jinja2)."""

    def __init__(self, cloud: str | None) -> None:
        every = {p.stem: yaml.safe_load(p.read_text()) or {} for p in sorted(VALUES.glob("*.yaml"))}
        defaults = [name for name, v in every.items() if v.get("default")]
        name = cloud or (defaults[0] if len(defaults) == 1 else "")
        if name not in every:
            wanted = f"unknown CLOUD {cloud!r}" if cloud else "no values file says `default: true`"
            raise UsageError(f"{wanted}; choose one of: {', '.join(every)}")
        self.name = name
        self.values: dict[str, Any] = every[name]
        self.folder = K8S if self.values.get("default") else K8S / name
        missing = [f for f in MANIFESTS if not (self.folder / f).is_file()]
        if missing:
            where = self.folder.relative_to(K8S.parent)
            raise UsageError(f"no {', '.join(missing)} in {where}/: make manifests")
        self.cluster: dict[str, Any] = yaml.safe_load((self.folder / "raycluster.yaml").read_text())
        self.values_file = f"k8s/values/{name}.yaml"
        # Every stage's RayJob has the same submitter, which runs beside the head.
        rayjob = self.folder / "rayjob-tune.yaml"
        job = yaml.safe_load(rayjob.read_text()) if rayjob.is_file() else {}
        self.submitter: dict[str, Any] | None = (
            (job.get("spec") or {}).get("submitterPodTemplate") or {}
        ).get("spec")

    def node_shape(self, role: str) -> str:
        """`e2-standard-4 (3920m CPU, 13300Mi allocatable)`, as the values file declares it."""
        shape = (self.values.get("nodes") or {}).get(role) or {}
        alloc = shape.get("allocatable") or {}
        machine = str(shape.get("machine", f"a {role} node")).split(" #")[0]
        return f"{machine} ({alloc.get('cpu', '?')} CPU, {alloc.get('memory', '?')} allocatable)"


def _template(doc: dict[str, Any]) -> dict[str, Any]:
    """The head's pod template of a RayCluster (or RayJob); a Pod is its own template."""
    spec = doc.get("spec") or {}
    cluster = spec.get("rayClusterSpec", spec) if doc.get("kind") == "RayJob" else spec
    if "headGroupSpec" in cluster:
        return cluster["headGroupSpec"]["template"]
    return doc


def head_pod(cluster: dict[str, Any]) -> dict[str, Any]:
    """The head pod's spec as KubeRay builds it, as far as scheduling goes: the head template
    plus the autoscaler sidecar when in-tree autoscaling is on."""
    spec = cluster["spec"]
    pod = copy.deepcopy(_template(cluster)["spec"])
    if spec.get("enableInTreeAutoscaling"):
        resources = (spec.get("autoscalerOptions") or {}).get("resources") or {
            "requests": AUTOSCALER_DEFAULT,
            "limits": AUTOSCALER_DEFAULT,
        }
        pod["containers"].append({"name": "autoscaler", "resources": resources})
    return pod


def _claim(template: dict[str, Any]) -> str:
    """The claim mounted at /mnt/cluster_storage in the template's first container."""
    spec = template["spec"]
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0].get("volumeMounts", [])}
    (volume,) = [v for v in spec.get("volumes", []) if v["name"] == mounts[STORAGE]]
    return str(volume["persistentVolumeClaim"]["claimName"])


# --- nodes -----------------------------------------------------------------------------------


def _cpu(amount: float) -> str:
    return f"{amount * 1000:.0f}m"


def _mem(amount: float) -> str:
    return f"{amount / 2**20:.0f}Mi"


def _alloc(node: dict[str, Any], key: str) -> float:
    return scheduling.quantity((node.get("status") or {}).get("allocatable", {}).get(key, "0"))


def _labels(node: dict[str, Any]) -> dict[str, str]:
    return node["metadata"].get("labels") or {}


def _taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return (node.get("spec") or {}).get("taints") or []


def _name(node: dict[str, Any]) -> str:
    return str(node["metadata"]["name"])


def _names(nodes: list[dict[str, Any]], most: int = 5) -> str:
    shown = ", ".join(_name(n) for n in nodes[:most])
    return shown + (f" and {len(nodes) - most} more" if len(nodes) > most else "")


def _affinity(pod: dict[str, Any]) -> str:
    """The pod's nodeSelector and required node affinity, the way kubectl -l writes them."""
    parts = [f"{k}={v}" for k, v in (pod.get("nodeSelector") or {}).items()]
    required = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = []
    for term in required.get("nodeSelectorTerms") or []:
        exprs = []
        for e in term.get("matchExpressions", []):
            values = ",".join(str(v) for v in e.get("values", []))
            if e["operator"] in ("In", "NotIn"):
                exprs.append(f"{e['key']} {e['operator'].lower()} ({values})")
            elif e["operator"] == "DoesNotExist":
                exprs.append(f"!{e['key']}")
            elif e["operator"] == "Exists":
                exprs.append(e["key"])
            else:
                exprs.append(f"{e['key']} {e['operator']} {values}")
        terms.append(",".join(exprs))
    if terms:
        parts.append(" or ".join(terms))
    return ",".join(parts) or "any node"


def requested_by_node() -> dict[str, dict[str, float]]:
    """What the pods already placed on each node request (pods that ended free theirs)."""
    out: dict[str, dict[str, float]] = {}
    for pod in items("pods", "-A"):
        where = (pod.get("spec") or {}).get("nodeName")
        if not where or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        total = out.setdefault(where, {"cpu": 0.0, "memory": 0.0, "pods": 0.0})
        for key, amount in scheduling.pod_requests(pod["spec"]).items():
            if key in total:
                total[key] += amount
        total["pods"] += 1
    return out


def check_head(report: Report, variant: Variant, nodes: list[dict[str, Any]]) -> None:
    pod = head_pod(variant.cluster)
    need = scheduling.pod_requests(pod)
    if variant.submitter:  # the submitter runs beside the head for the whole job
        for key, amount in scheduling.pod_requests(variant.submitter).items():
            need[key] = need.get(key, 0.0) + amount
    need_cpu, need_mem = need.get("cpu", 0.0), need.get("memory", 0.0)
    sidecar = " with the autoscaler sidecar" if len(pod["containers"]) > 1 else ""
    submitter = " and the submitter" if variant.submitter else ""
    wants = f"{_cpu(need_cpu)} CPU, {_mem(need_mem)} memory{sidecar}{submitter}"
    taken = requested_by_node()

    def free(node: dict[str, Any], key: str) -> float:
        return _alloc(node, key) - taken.get(_name(node), {}).get(key, 0.0)

    def offer(node: dict[str, Any], key: str) -> str:
        show = _cpu if key == "cpu" else _mem
        used = taken.get(_name(node), {})
        if not used.get(key):
            return f"{show(_alloc(node, key))} {'CPU' if key == 'cpu' else 'memory'} allocatable"
        return (
            f"{show(free(node, key))} {'CPU' if key == 'cpu' else 'memory'} free "
            f"({show(_alloc(node, key))} allocatable, {show(used[key])} requested by the "
            f"{int(used['pods'])} pod(s) already there)"
        )

    shape = variant.node_shape("head")
    admitted = [n for n in nodes if scheduling.selects(pod, _labels(n))]
    if not admitted:
        report.problem(
            f"no node is admitted by the head's node affinity ({_affinity(pod)}): "
            f"{len(nodes)} node(s), none of them a CPU node for the head",
            f"add a CPU node pool the affinity admits, like {shape} "
            f"({variant.values_file}: nodes.head, head.node_affinity)",
        )
        return
    tolerated = [n for n in admitted if not scheduling.untolerated(pod, _taints(n))]
    if not tolerated:
        taints = "; ".join(
            f"{_name(n)}: {', '.join(scheduling.untolerated(pod, _taints(n)))}" for n in admitted
        )
        report.problem(
            f"{len(admitted)} node(s) admitted by the head's node affinity, but the head "
            f"tolerates none of their taints ({taints})",
            f"an untainted CPU node pool like {shape}, or the taint in head.tolerations "
            f"({variant.values_file}), then make manifests",
        )
        return
    fits = [n for n in tolerated if free(n, "cpu") >= need_cpu and free(n, "memory") >= need_mem]
    if not fits:
        by_cpu = max(tolerated, key=lambda n: free(n, "cpu"))
        by_mem = max(tolerated, key=lambda n: free(n, "memory"))
        report.problem(
            f"the head pod needs {wants}; the roomiest of the {len(tolerated)} node(s) it may "
            f"use offers {offer(by_cpu, 'cpu')} ({_name(by_cpu)}) and "
            f"{offer(by_mem, 'memory')} ({_name(by_mem)})",
            f"a CPU node pool of {shape} or larger, or a smaller head.resources "
            f"({variant.values_file})",
        )
        return
    report.ok(f"{len(fits)} node(s) can hold the head pod ({wants}): {_names(fits)}")


def _gpu_group(cluster: dict[str, Any]) -> dict[str, Any] | None:
    for group in cluster["spec"].get("workerGroupSpecs", []):
        if scheduling.pod_requests(group["template"]["spec"]).get(GPU, 0.0) > 0:
            return group
    return None


def _autoscaler_deployments() -> list[dict[str, Any]]:
    return [d for d in deployments() if "cluster-autoscaler" in d["metadata"]["name"]]


def node_autoscaler() -> str | None:
    """Which node autoscaler this cluster runs, if one is to be seen."""
    if get("configmap", "cluster-autoscaler-status", "-n", "kube-system") is not None:
        return "Cluster Autoscaler (ConfigMap kube-system/cluster-autoscaler-status)"
    for d in _autoscaler_deployments():
        return f"Cluster Autoscaler (Deployment {_where(d)})"
    if get("crd", "nodepools.karpenter.sh") is not None:
        return "Karpenter (CRD nodepools.karpenter.sh)"
    return None


# What a node autoscaler without the cloud's permissions logs (AWS: AccessDenied,
# UnauthorizedOperation, "is not authorized to perform"; Kubernetes RBAC: forbidden).
DENIED = ("AccessDenied", "UnauthorizedOperation", "is not authorized to perform", "forbidden")


def check_node_autoscaler(report: Report, variant: Variant) -> None:
    """A Cluster Autoscaler that cannot scale says so, in its status ConfigMap (a node group
    Unhealthy or backing off) or in its log (its cloud calls denied): the T4 pool would then
    never leave zero while every other check passes."""
    if _gpu_group(variant.cluster) is None:
        return
    found = []
    status = get("configmap", "cluster-autoscaler-status", "-n", "kube-system")
    text = str(((status or {}).get("data") or {}).get("status", ""))
    bad = [
        line.strip()
        for line in text.splitlines()
        if any(word in line for word in ("Unhealthy", "Backoff", "backoff"))
    ]
    if bad:
        found.append(f"its status ConfigMap says: {'; '.join(bad[:3])}")
    for d in _autoscaler_deployments():
        where = d["metadata"].get("namespace", "default")
        name = d["metadata"]["name"]
        log = kubectl("logs", f"deploy/{name}", "-n", where, "--tail=300").stdout
        denied = [line.strip() for line in log.splitlines() if any(w in line for w in DENIED)]
        if denied:
            found.append(f"Deployment {where}/{name} logs: {denied[-1][:300]}")
    if found:
        report.problem(
            f"the node autoscaler cannot scale the T4 pool ({' | '.join(found)})",
            "give the autoscaler's service account the cloud's scaling permissions (EKS: "
            "iam.serviceAccounts with wellKnownPolicies.autoScaler and the chart's "
            "rbac.serviceAccount.name, k8s/README.md: The walk), then kubectl rollout restart it",
        )


def plugin_daemonsets() -> list[dict[str, Any]]:
    """NVIDIA device plugin DaemonSets, anywhere in the cluster (by their usual names: the
    chart's `<release>-nvidia-device-plugin`, GKE's `nvidia-gpu-device-plugin`, eksctl's
    `nvidia-device-plugin-daemonset`)."""
    return [
        ds
        for ds in items("daemonsets", "-A")
        if ("nvidia" in (name := ds["metadata"]["name"]) and "device-plugin" in name)
        or "gpu-device-plugin" in name
    ]


def device_plugin() -> str | None:
    """An NVIDIA device plugin DaemonSet or the GPU operator, anywhere in the cluster."""
    daemonsets = plugin_daemonsets()
    if daemonsets:
        return f"DaemonSet {_where(daemonsets[0])}"
    for d in deployments():
        if "gpu-operator" in d["metadata"]["name"]:
            return f"the GPU operator (Deployment {_where(d)})"
    if get("crd", "clusterpolicies.nvidia.com") is not None:
        return "the GPU operator (CRD clusterpolicies.nvidia.com)"
    return None


def _t4_targets(
    variant: Variant, pod: dict[str, Any], nodes: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str]:
    """The T4 nodes the workers would use, or (none yet) the node the values file declares
    for the pool, as the autoscaler will make it."""
    matching = [n for n in nodes if scheduling.selects(pod, _labels(n))]
    if matching:
        return matching, f"T4 node(s) {_names(matching)}"
    shape = (variant.values.get("nodes") or {}).get("t4") or {}
    declared = {
        "metadata": {"name": "declared", "labels": shape.get("labels") or {}},
        "spec": {"taints": shape.get("taints") or []},
    }
    return [declared], f"the T4 pool's nodes as {variant.values_file} declares them (none yet)"


def _not_admitted(spec: dict[str, Any], node: dict[str, Any]) -> str | None:
    """Why a DaemonSet's pod template would not run on `node`, or None if it would."""
    if not scheduling.selects(spec, _labels(node)):
        have = ", ".join(f"{k}={v}" for k, v in sorted(_labels(node).items())) or "none"
        return f"its node affinity needs {_affinity(spec)} (the node's labels: {have})"
    untolerated = scheduling.untolerated(spec, _taints(node))
    if untolerated:
        return f"it does not tolerate {', '.join(untolerated)}"
    return None


def check_device_plugin(report: Report, variant: Variant, nodes: list[dict[str, Any]]) -> None:
    """The device plugin must be able to run on the T4 nodes (or, at zero nodes, on the ones
    the values file declares): a DaemonSet whose affinity or tolerations leave them out
    schedules no pod there, and the nodes come up, bill, and offer no nvidia.com/gpu."""
    group = _gpu_group(variant.cluster)
    if group is None:
        return
    declared = variant.values.get("device_plugin") or {}
    ours = bool(declared.get("chart"))
    fix = (
        f"make device-plugin CLOUD={variant.name} (the pinned chart with "
        f"{variant.folder.relative_to(K8S.parent)}/device-plugin.values.yaml: an affinity on the "
        "pool's labels and its taints tolerated)"
        if ours
        else "its affinity (or nodeSelector) must admit the pool's labels and its tolerations "
        f"the pool's taints; {declared.get('installed_by', 'the cloud')} installs one that does"
    )
    daemonsets = plugin_daemonsets()
    if not daemonsets:
        if ours:
            report.problem(
                f"no NVIDIA device plugin DaemonSet: {variant.values.get('title', variant.name)} "
                "installs none, so T4 nodes would offer no nvidia.com/gpu",
                fix,
            )
        return
    targets, what = _t4_targets(variant, group["template"]["spec"], nodes)
    reasons = {}
    for ds in daemonsets:
        spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        why = [r for n in targets if (r := _not_admitted(spec, n))]
        if not why:
            report.ok(f"DaemonSet {_where(ds)} (the device plugin) runs on {what}")
            return
        reasons[_where(ds)] = why[0]
    detail = "; ".join(f"DaemonSet {name}: {why}" for name, why in reasons.items())
    report.problem(f"no device plugin would run on {what} ({detail})", fix)


def check_t4(report: Report, variant: Variant, nodes: list[dict[str, Any]]) -> None:
    group = _gpu_group(variant.cluster)
    if group is None:
        report.ok(
            "no worker group asks for nvidia.com/gpu (a GPU declared in the group's resources "
            "only): no GPU node pool to check"
        )
        return
    pod = group["template"]["spec"]
    label = _affinity(pod)
    shape = variant.node_shape("t4")
    matching = [n for n in nodes if scheduling.selects(pod, _labels(n))]
    if not matching:
        autoscaler = node_autoscaler()
        if autoscaler:
            report.ok(
                f"no node matches {label} yet; a node autoscaler ({autoscaler}) must add one: "
                "a wrong label would look the same — check the pool's labels"
            )
        else:
            report.problem(
                f"no node matches {label} and no node autoscaler found (pool scaled to zero "
                "without autoscaling, wrong label, ...)",
                f"a {shape} node pool labelled {label}, autoscaled from zero or with a node; "
                f"or worker.node_selector in {variant.values_file}, then make manifests",
            )
        return
    need = scheduling.pod_requests(pod)
    blocked, no_gpu, small, usable = [], [], [], []
    for node in matching:
        if scheduling.untolerated(pod, _taints(node)):
            blocked.append(node)
        elif _alloc(node, GPU) < need[GPU]:
            no_gpu.append(node)
        elif any(_alloc(node, k) < need.get(k, 0.0) for k in ("cpu", "memory")):
            small.append(node)
        else:
            usable.append(node)
    if blocked:
        taints = "; ".join(
            f"{_name(n)}: {', '.join(scheduling.untolerated(pod, _taints(n)))}" for n in blocked
        )
        report.problem(
            f"node(s) match {label} but have taints the workers do not tolerate ({taints})",
            f"add the taint to worker.tolerations in {variant.values_file}, then make manifests",
        )
    if no_gpu:
        plugin = device_plugin()
        if plugin is None:
            report.problem(
                f"node(s) {_names(no_gpu)} match {label} but offer no allocatable "
                "nvidia.com/gpu: device plugin missing (no NVIDIA device plugin DaemonSet or "
                "GPU operator found)",
                "install the NVIDIA device plugin (or the GPU operator) on that pool; GKE "
                "installs its own with the GPU driver (gpu-driver-version on the node pool)",
            )
        else:
            report.problem(
                f"node(s) {_names(no_gpu)} match {label} but offer no allocatable "
                f"nvidia.com/gpu: device plugin missing on them ({plugin} exists, but has not "
                "registered their GPUs: still starting, not scheduled there, or no driver)",
                f"kubectl get pods -A -o wide | grep device-plugin: one must run on each of "
                f"{_names(no_gpu)}",
            )
    if small:
        report.problem(
            f"node(s) {_names(small)} match {label} but are too small for a worker "
            f"({_cpu(need.get('cpu', 0.0))} CPU, {_mem(need.get('memory', 0.0))} memory)",
            f"a {shape} node pool, or smaller worker.resources in {variant.values_file}",
        )
    if usable:
        report.ok(f"{len(usable)} T4 node(s) ready for workers: {_names(usable, most=20)}")


# --- the claim and the write ----------------------------------------------------------------


def check_claim(report: Report, variant: Variant, claim: str) -> bool:
    """Whether the claim can take the write pod: it exists, is RWX and Bound, or Pending on a
    class that binds on first consumer (the write pod is that consumer)."""
    cloud = variant.name
    pvc = get("pvc", claim)
    if pvc is None:
        report.problem(
            f"PersistentVolumeClaim {claim} does not exist", f"make storage CLOUD={cloud}"
        )
        return False
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    klass = spec.get("storageClassName") or ""
    want = str((variant.values.get("storage") or {}).get("class") or "")
    if klass != want:
        report.problem(
            f"{claim} has storage class {klass!r}, the {cloud} variant's is {want!r}",
            f"to replace it, kubectl delete pvc {claim} (this deletes every result and "
            f"checkpoint on it), then make storage CLOUD={cloud}",
        )
    modes = status.get("accessModes") or spec.get("accessModes") or []
    if "ReadWriteMany" not in modes:
        report.problem(
            f"{claim} is {modes}, not ReadWriteMany",
            f"a ReadWriteMany class (storage.class in {variant.values_file}): kubectl delete "
            f"pvc {claim} (data loss), then make storage CLOUD={cloud}",
        )
        return False
    phase = status.get("phase")
    if phase == "Bound":
        report.ok(f"{claim} is Bound, ReadWriteMany, class {klass!r}")
        return True
    if phase == "Pending":
        sc = get("storageclass", klass) if klass else None
        if klass and sc is None:
            report.problem(
                f"{claim} is Pending: its storage class {klass!r} does not exist",
                f"make storage CLOUD={cloud} (it creates the class where the variant has one)",
            )
            return False
        binding = (sc or {}).get("volumeBindingMode", "Immediate")
        if binding == "WaitForFirstConsumer":
            report.ok(
                f"{claim} is Pending, ReadWriteMany: class {klass!r} binds on first consumer "
                "(the write pod below binds it)"
            )
            return True
        report.problem(
            f"{claim} is Pending with {binding} binding (class {klass!r}): "
            "no volume was provisioned for it",
            f"kubectl describe pvc {claim}: its events name the provisioner's error "
            "(CSI driver not installed, EFS file system id, quota)",
        )
        return False
    report.problem(f"{claim} is {phase}, not Bound", f"kubectl describe pvc {claim}")
    return False


def _writer_pod(source: dict[str, Any], fs_group: int) -> dict[str, Any]:
    """The one-shot pod that writes a probe file to the shared volume, built from the head's
    pod template of `source` (a RayCluster or RayJob; a Pod serves as its own template):
    the head's image, node affinity, tolerations and pull secrets, so that it is pulled and
    placed as the head will be; Pod Security "restricted", small, never restarted."""
    template = _template(source)
    spec = template["spec"]
    ray = spec["containers"][0]  # KubeRay's Ray container is the first
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels |= {
        "app.kubernetes.io/name": "ray-tune-k8s",
        "app.kubernetes.io/component": "preflight",
        "app.kubernetes.io/part-of": "ray-tune-k8s",  # teardown and the NetworkPolicy
    }
    placement = (
        "affinity",
        "nodeSelector",
        "tolerations",
        "imagePullSecrets",
        "serviceAccountName",
    )
    security = dict(spec.get("securityContext") or {})
    security |= {
        "runAsNonRoot": True,
        "runAsUser": security.get("runAsUser", 1000),
        "fsGroup": fs_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": "preflight",
        "image": ray["image"],
        "command": [
            "bash",
            "-c",
            f'f={STORAGE}/.preflight-$HOSTNAME && touch "$f" && stat -c "%u" "$f" && rm "$f"',
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "volumeMounts": [
            {"name": "cluster-storage", "mountPath": STORAGE},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if "imagePullPolicy" in ray:
        container["imagePullPolicy"] = ray["imagePullPolicy"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            # Gone on its own if this script is killed before it deletes the pod.
            "activeDeadlineSeconds": int(POD_TIMEOUT_S) + 300,
            "automountServiceAccountToken": False,
            **{key: copy.deepcopy(spec[key]) for key in placement if key in spec},
            "securityContext": security,
            "containers": [container],
            "volumes": [
                {
                    "name": "cluster-storage",
                    "persistentVolumeClaim": {"claimName": _claim(template)},
                },
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def _stuck(pod: dict[str, Any]) -> tuple[str, str] | None:
    """('pull', message) or ('schedule', message) when waiting longer cannot help."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_FAILURES:
            return "pull", f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return "schedule", str(condition.get("message", ""))
    return None


def _waiting(pod: dict[str, Any] | None) -> str:
    reasons = [
        ((cs.get("state") or {}).get("waiting") or {}).get("reason")
        for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []
    ]
    return ", ".join(r for r in reasons if r)


def check_write(report: Report, variant: Variant, fs_group: int) -> None:
    pod = _writer_pod(variant.cluster, fs_group)
    image = pod["spec"]["containers"][0]["image"]
    kubectl("delete", "pod", POD, "--ignore-not-found", "--wait=true")  # one left from before
    applied = kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    if applied.returncode != 0:
        report.problem(
            f"cannot create the preflight pod: {applied.stderr.strip()}",
            "check that you may create pods in this namespace (kubectl auth can-i create pods)",
        )
        return
    try:
        deadline = time.monotonic() + POD_TIMEOUT_S
        found: dict[str, Any] | None = None
        phase = ""
        while True:
            found = get("pod", POD)
            phase = ((found or {}).get("status") or {}).get("phase", "")
            stuck = _stuck(found or {})
            if stuck and stuck[0] == "pull":
                report.problem(
                    f"the image {image} cannot be pulled: {stuck[1]}",
                    "make push, then make manifests (they name the pushed digest); a private "
                    "registry: IMAGE_PULL_SECRET=<secret> make manifests; or pull access for "
                    f"the nodes ({variant.values.get('registry', 'the registry')})",
                )
                return
            if stuck:
                report.problem(
                    f"the preflight pod, placed like the head, cannot be scheduled: {stuck[1]}",
                    f"a CPU node the head's affinity admits with room left, like "
                    f"{variant.node_shape('head')} ({variant.values_file}: nodes.head)",
                )
                return
            if phase in ("Succeeded", "Failed") or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        if phase not in ("Succeeded", "Failed"):
            waiting = _waiting(found)
            report.problem(
                f"the preflight pod did not finish within {POD_TIMEOUT_S:.0f}s "
                f"(phase {phase or 'unknown'}{', ' + waiting if waiting else ''})",
                "a cold pull of the multi-GB image can take long: PREFLIGHT_POD_TIMEOUT_S=1800; "
                f"while it runs, kubectl describe pod {POD}",
            )
            return
        logs = kubectl("logs", POD).stdout.strip()
        uid = (logs.splitlines() or [""])[-1].strip()
        if phase == "Succeeded" and uid == "1000":
            report.ok(f"pulled image {image} and wrote to the volume as uid 1000")
        elif phase == "Succeeded" and uid.isdigit():
            report.problem(
                f"a pod of the image wrote to the volume, but the file belongs to uid {uid}, "
                "not 1000: the volume maps owners",
                "EFS: access points with uid/gid 1000/100 (the class's uid and gid); Azure "
                "Files: mount options uid=1000,gid=100; NFS: no root_squash/all_squash to "
                "another uid (k8s/README.md: The walk)",
            )
        else:
            report.problem(
                f"a pod of the image could not write to the volume as uid 1000 "
                f"(phase {phase}: {logs[-300:]})",
                "EFS: an access point with uid/gid 1000/100; NFS: export it writable for "
                "group 100; Filestore: fsGroupChangePolicy OnRootMismatch "
                "(k8s/README.md: The walk)",
            )
    finally:
        kubectl("delete", "pod", POD, "--wait=false")


# --- the operator ------------------------------------------------------------------------------


def check_operator(report: Report) -> None:
    for crd in ("rayjobs.ray.io", "rayclusters.ray.io"):
        found = get("crd", crd)
        if found is None:
            report.problem(f"CRD {crd} is not installed", "make operator")
            continue
        served = [v["name"] for v in found["spec"]["versions"] if v.get("served")]
        if "v1" in served:
            report.ok(f"CRD {crd} serves {', '.join(served)}")
        else:
            report.problem(f"CRD {crd} serves {served}, not v1", "make operator (KubeRay >= 1.0)")
    operator = "kuberay-operator"  # the Helm chart's app.kubernetes.io/name
    images = [
        c["image"]
        for d in deployments()
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/name") == operator
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    if not images:
        report.problem("no kuberay-operator Deployment found", "make operator")
    elif any(image.rsplit(":", 1)[-1].lstrip("v") == KUBERAY_VERSION for image in images):
        report.ok(f"KubeRay operator {KUBERAY_VERSION} ({images[0]})")
    else:
        report.problem(
            f"the operator runs {images}, the manifests are written for KubeRay {KUBERAY_VERSION}",
            f"make operator KUBERAY_VERSION={KUBERAY_VERSION}",
        )


def main() -> int:
    variant = Variant(os.environ.get("CLOUD") or None)
    head = _template(variant.cluster)
    claim = _claim(head)
    fs_group = int((head["spec"].get("securityContext") or {}).get("fsGroup", 100))
    report = Report()
    check_operator(report)
    nodes = items("nodes")
    check_head(report, variant, nodes)
    check_t4(report, variant, nodes)
    check_device_plugin(report, variant, nodes)
    check_node_autoscaler(report, variant)
    if check_claim(report, variant, claim):
        check_write(report, variant, fs_group)
    return 1 if report.problems else 0


if __name__ == "__main__":
    try:
        if sys.argv[1:] in (["-h"], ["--help"]):
            print(__doc__)
            sys.exit(0)
        if sys.argv[1:]:
            raise UsageError(
                f"preflight takes no arguments (CLOUD=... instead), got {sys.argv[1:]}"
            )
        sys.exit(main())
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
