"""jobs/kube/preflight.py (make preflight TARGET=k8s CLOUD=...) against clusters played by the
stand-in kubectl: a healthy one per variant, built from the node shapes its values file
declares, and one broken thing at a time, each named for what it is, with its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kuberay.fake_kubectl import calls, environment
from tests.support.pod_security import violations
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


# --- a ready cluster -----------------------------------------------------------------------


def test_a_ready_cluster_passes_every_check(tmp_path: Path) -> None:
    proc = preflight(tmp_path, healthy())
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert all(line.startswith("ok: ") for line in lines), lines
    image = head_template("gke")["spec"]["containers"][0]["image"]
    assert lines == [
        "ok: CRD rayjobs.ray.io serves v1",
        "ok: CRD rayclusters.ray.io serves v1",
        "ok: KubeRay operator 1.7.0 (quay.io/kuberay/operator:v1.7.0)",
        # head 1 CPU/4Gi + the autoscaler sidecar's 200m/512Mi (autoscalerOptions.resources)
        # + the submitter's 200m/512Mi
        "ok: 1 node(s) can hold the head pod (1400m CPU, 5120Mi memory with the autoscaler "
        "sidecar and the submitter): cpu-a",
        "ok: 1 T4 node(s) ready for workers: t4-a",
        "ok: DaemonSet kube-system/nvidia-gpu-device-plugin (the device plugin) runs on T4 "
        "node(s) t4-a",
        f"ok: {CLAIM} is Bound, ReadWriteMany, class 'standard-rwx'",
        f"ok: pulled image {image} and wrote to the volume as uid 1000",
    ]
    assert calls(tmp_path)[-1] == "delete pod ray-tune-preflight --wait=false"


def test_the_write_pod_is_the_head_pod_template_made_small_and_restricted(tmp_path: Path) -> None:
    assert preflight(tmp_path, healthy()).returncode == 0
    pod = applied(tmp_path)
    assert pod is not None
    head = head_template("gke")["spec"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert pod["metadata"]["name"] == "ray-tune-preflight"
    assert pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ray-tune-k8s"
    assert container["image"] == head["containers"][0]["image"]
    assert spec["affinity"] == head["affinity"]
    assert spec.get("tolerations") == head.get("tolerations")
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] >= 3
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["fsGroup"] == 100
    assert spec["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {"cpu": "200m", "memory": "128Mi"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    claim = volumes[mounts["/mnt/cluster_storage"]["name"]]["persistentVolumeClaim"]
    assert claim == {"claimName": CLAIM}  # read-write
    assert not mounts["/mnt/cluster_storage"].get("readOnly")
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert violations(spec) == []


def _module() -> Any:
    from jobs.kube import preflight

    return preflight


@pytest.mark.parametrize("variant", ["gke", "eks", "aks", "kind"])
def test_every_variants_write_pod_meets_pod_security_restricted(variant: str) -> None:
    cluster = yaml.safe_load((folder(variant) / "raycluster.yaml").read_text())
    pod = _module()._writer_pod(cluster, 100)
    assert violations(pod["spec"]) == []
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert pod["spec"]["containers"][0]["image"] == head["containers"][0]["image"]
    assert pod["spec"].get("affinity") == head.get("affinity")
    assert pod["spec"].get("imagePullSecrets") == head.get("imagePullSecrets")


def test_cloud_eks_reads_k8s_eks(tmp_path: Path) -> None:
    proc = preflight(tmp_path, healthy("eks"), CLOUD="eks")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: 1 T4 node(s) ready for workers: t4-a" in proc.stdout
    assert f"ok: {CLAIM} is Bound, ReadWriteMany, class 'ray-tune-efs'" in proc.stdout
    pod = applied(tmp_path)
    assert pod is not None
    head = head_template("eks")["spec"]
    assert pod["spec"]["affinity"] == head["affinity"]  # instance-type NotIn g4dn.*
    assert "NotIn" in json.dumps(pod["spec"]["affinity"])
    # The GKE cluster's nodes do not fit the EKS variant: its selector is the instance type.
    proc = preflight(tmp_path, changed("eks", nodes=healthy("gke")["nodes"]), CLOUD="eks")
    assert "no node matches node.kubernetes.io/instance-type=g4dn.xlarge" in proc.stdout


def test_kind_has_no_gpu_pool_to_check(tmp_path: Path) -> None:
    objects = changed("kind", nodes={"items": [node("kind", "head", "kind-control-plane")]})
    proc = preflight(tmp_path, objects, CLOUD="kind")
    assert proc.returncode == 0, proc.stdout
    assert "ok: no worker group asks for nvidia.com/gpu" in proc.stdout
    assert (
        "ok: 1 node(s) can hold the head pod (1200m CPU, 2560Mi memory and the submitter): "
        "kind-control-plane"
    ) in proc.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {"CLOUD": "nope"}, "error: unknown CLOUD 'nope'; choose one of: aks, eks, gke, kind"),
        (("--cloud", "eks"), {}, "error: preflight takes no arguments"),
    ],
    ids=["unknown CLOUD", "arguments"],
)
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    proc = preflight(tmp_path, healthy(), *args, **env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(expected), proc.stderr
    assert not (tmp_path / "state.calls").exists()  # nothing asked of the cluster


def test_help(tmp_path: Path) -> None:
    proc = preflight(tmp_path, healthy(), "--help")
    assert proc.returncode == 0 and "PREFLIGHT_POD_TIMEOUT_S" in proc.stdout


# --- one broken thing at a time ------------------------------------------------------------

OLD_OPERATOR = deployment(
    "default",
    "kuberay-operator",
    "kuberay/operator:v1.1.0",
    {"app.kubernetes.io/name": "kuberay-operator"},
)
GKE_T4_TAINT = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
DEDICATED = [{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}]
PULL_BACKOFF = {
    "status": {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "preflight",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": 'Back-off pulling image "ghcr.io/x": 403 Forbidden',
                    }
                },
            }
        ],
    }
}
SCHEDULER = "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint"
UNSCHEDULABLE = {
    "status": {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": SCHEDULER,
            }
        ],
    }
}


def gke_nodes(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(nodes)}


# case: (objects, the problem's text, its fix)
CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "no operator CRDs": (
        changed(**{"crd__rayjobs.ray.io": None}),
        "CRD rayjobs.ray.io is not installed",
        "make operator",
    ),
    "old operator": (
        changed(deployments={"items": [OLD_OPERATOR]}),
        "the operator runs ['kuberay/operator:v1.1.0'], the manifests are written for KubeRay "
        "1.7.0",
        "make operator KUBERAY_VERSION=1.7.0",
    ),
    "head: no node admitted by its affinity": (
        changed(nodes=gke_nodes(node("gke", "t4", "t4-a"))),
        "no node is admitted by the head's node affinity (!cloud.google.com/gke-accelerator): "
        "1 node(s), none of them a CPU node for the head",
        f"add a CPU node pool the affinity admits, like {HEAD_SHAPE}",
    ),
    "head: admitted nodes all tainted": (
        changed(
            nodes=gke_nodes(
                node("gke", "head", "cpu-a", taints=DEDICATED), node("gke", "t4", "t4-a")
            )
        ),
        "1 node(s) admitted by the head's node affinity, but the head tolerates none of their "
        "taints (cpu-a: dedicated=ml:NoSchedule)",
        "head.tolerations",
    ),
    "head: admitted node too small": (
        changed(
            nodes=gke_nodes(
                node("gke", "head", "cpu-a", allocatable={"cpu": "940m", "memory": "2900Mi"}),
                node("gke", "head", "cpu-b", allocatable={"cpu": "1930m", "memory": "3Gi"}),
                node("gke", "t4", "t4-a"),
            )
        ),
        "the head pod needs 1400m CPU, 5120Mi memory with the autoscaler sidecar and the "
        "submitter; the roomiest of the 2 node(s) it may use offers 1930m CPU allocatable (cpu-b) "
        "and 3072Mi memory allocatable (cpu-b)",
        f"a CPU node pool of {HEAD_SHAPE} or larger",
    ),
    "head: the node's room taken by the pods already on it": (
        changed(
            nodes=gke_nodes(node("gke", "head", "cpu-a"), node("gke", "t4", "t4-a")),
            # kube-dns x2, metrics-server and an operator of someone else's: 2,700m of 3,920m.
            pods={
                "items": [
                    {
                        "spec": {
                            "nodeName": "cpu-a",
                            "containers": [{"resources": {"requests": {"cpu": cpu}}}],
                        },
                        "status": {"phase": "Running"},
                    }
                    for cpu in ("900m", "900m", "900m")
                ]
                + [
                    {  # a finished pod holds nothing
                        "spec": {
                            "nodeName": "cpu-a",
                            "containers": [{"resources": {"requests": {"cpu": "3"}}}],
                        },
                        "status": {"phase": "Succeeded"},
                    }
                ]
            },
        ),
        "the head pod needs 1400m CPU, 5120Mi memory with the autoscaler sidecar and the "
        "submitter; the roomiest of the 1 node(s) it may use offers 1220m CPU free (3920m "
        "allocatable, 2700m requested by the 3 pod(s) already there) (cpu-a)",
        f"a CPU node pool of {HEAD_SHAPE} or larger",
    ),
    "t4: taint not tolerated": (
        changed(
            nodes=gke_nodes(
                node("gke", "head", "cpu-a"), node("gke", "t4", "t4-a", taints=DEDICATED)
            )
        ),
        f"node(s) match {T4_LABEL} but have taints the workers do not tolerate "
        "(t4-a: dedicated=ml:NoSchedule)",
        "add the taint to worker.tolerations in k8s/values/gke.yaml",
    ),
    "t4: no allocatable GPU, no device plugin": (
        changed(
            nodes=gke_nodes(
                node("gke", "head", "cpu-a"),
                node("gke", "t4", "t4-a", allocatable={"nvidia.com/gpu": "0"}),
            ),
            daemonsets={"items": []},
        ),
        f"node(s) t4-a match {T4_LABEL} but offer no allocatable nvidia.com/gpu: device plugin "
        "missing (no NVIDIA device plugin DaemonSet or GPU operator found)",
        "install the NVIDIA device plugin (or the GPU operator) on that pool",
    ),
    "t4: no allocatable GPU beside a device plugin": (
        changed(
            nodes=gke_nodes(
                node("gke", "head", "cpu-a"),
                node("gke", "t4", "t4-a", allocatable={"nvidia.com/gpu": "0"}),
            ),
            daemonsets={"items": [PLUGINS["gke"]]},
        ),
        "device plugin missing on them (DaemonSet kube-system/nvidia-gpu-device-plugin exists",
        "one must run on each of t4-a",
    ),
    "t4: node too small for a worker": (
        changed(
            nodes=gke_nodes(
                node("gke", "head", "cpu-a"),
                node("gke", "t4", "t4-a", allocatable={"cpu": "1930m", "memory": "7Gi"}),
            )
        ),
        f"node(s) t4-a match {T4_LABEL} but are too small for a worker (3000m CPU, 10240Mi memory)",
        "a n1-standard-4 + 1 nvidia-tesla-t4 (3920m CPU, 12700Mi allocatable) node pool",
    ),
    "t4: no node and no node autoscaler": (
        changed(nodes=gke_nodes(node("gke", "head", "cpu-a"))),
        f"no node matches {T4_LABEL} and no node autoscaler found (pool scaled to zero without "
        "autoscaling, wrong label, ...)",
        f"labelled {T4_LABEL}, autoscaled from zero or with a node",
    ),
    "no claim": (
        changed(**{f"pvc__{CLAIM}": None}),
        f"PersistentVolumeClaim {CLAIM} does not exist",
        "make storage CLOUD=gke",
    ),
    "claim of another class": (
        changed(**{f"pvc__{CLAIM}": pvc("premium-rwo-nfs")}),
        f"{CLAIM} has storage class 'premium-rwo-nfs', the gke variant's is 'standard-rwx'",
        f"to replace it, kubectl delete pvc {CLAIM} (this deletes every result and checkpoint "
        "on it), then make storage CLOUD=gke",
    ),
    "single-node claim": (
        changed(**{f"pvc__{CLAIM}": pvc("standard-rwx", modes=("ReadWriteOnce",))}),
        f"{CLAIM} is ['ReadWriteOnce'], not ReadWriteMany",
        "a ReadWriteMany class",
    ),
    "claim pending, immediate binding": (
        changed(
            **{
                f"pvc__{CLAIM}": pvc("standard-rwx", phase="Pending"),
                "storageclass__standard-rwx": {"volumeBindingMode": "Immediate"},
            }
        ),
        f"{CLAIM} is Pending with Immediate binding (class 'standard-rwx'): no volume was "
        "provisioned for it",
        f"kubectl describe pvc {CLAIM}",
    ),
    "claim pending, class missing": (
        changed(**{f"pvc__{CLAIM}": pvc("standard-rwx", phase="Pending")}),
        f"{CLAIM} is Pending: its storage class 'standard-rwx' does not exist",
        "make storage CLOUD=gke",
    ),
    "image cannot be pulled": (
        changed(**{POD.replace("/", "__"): PULL_BACKOFF}),
        "the image ghcr.io/ray-tune-k8s/ray-tune-k8s:",
        "make push",
    ),
    "write pod unschedulable": (
        changed(**{POD.replace("/", "__"): UNSCHEDULABLE}),
        f"the preflight pod, placed like the head, cannot be scheduled: {SCHEDULER}",
        f"a CPU node the head's affinity admits with room left, like {HEAD_SHAPE}",
    ),
    "volume not writable": (
        changed(
            **{POD.replace("/", "__"): {"status": {"phase": "Failed"}}},
            pod_logs="touch: Permission denied",
        ),
        "a pod of the image could not write to the volume as uid 1000 (phase Failed: touch: "
        "Permission denied)",
        "EFS: an access point with uid/gid 1000/100",
    ),
    "written as another uid": (
        changed(pod_logs="0"),
        "a pod of the image wrote to the volume, but the file belongs to uid 0, not 1000",
        "Azure Files: mount options uid=1000,gid=100",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_problem_is_named_with_its_fix(tmp_path: Path, case: str) -> None:
    objects, text, fix = CASES[case]
    proc = preflight(tmp_path, objects)
    assert proc.returncode == 1, proc.stdout
    found = problems(proc)
    assert len(found) == 1, found
    assert found[0].endswith(")"), found
    said, fixed = found[0].removeprefix("problem: ").split(" (fix: ", 1)
    assert text in said, found
    assert fix in fixed, found
    # Whatever failed, a pod that was created is deleted at the end.
    if applied(tmp_path) is not None:
        assert calls(tmp_path)[-1] == "delete pod ray-tune-preflight --wait=false"


def test_an_image_that_cannot_be_pulled_is_the_image_not_the_storage(tmp_path: Path) -> None:
    proc = preflight(tmp_path, CASES["image cannot be pulled"][0], PREFLIGHT_POD_TIMEOUT_S="60")
    (problem,) = problems(proc)
    image = head_template("gke")["spec"]["containers"][0]["image"]
    assert problem.startswith(
        f'problem: the image {image} cannot be pulled: ImagePullBackOff: Back-off pulling image "'
    )
    assert "IMAGE_PULL_SECRET" in problem
    assert "volume" not in problem and "EFS" not in problem
    assert f"ok: {CLAIM} is Bound" in proc.stdout
    # Not waited out: the first look at the pod said it cannot be pulled.
    assert sum(c.startswith("get pod ray-tune-preflight") for c in calls(tmp_path)) == 1
    assert "logs ray-tune-preflight" not in calls(tmp_path)


def test_a_pod_still_pulling_at_the_timeout_says_so(tmp_path: Path) -> None:
    pulling = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}],
        }
    }
    proc = preflight(
        tmp_path, changed(**{POD.replace("/", "__"): pulling}), PREFLIGHT_POD_TIMEOUT_S="1"
    )
    (problem,) = problems(proc)
    assert problem.startswith(
        "problem: the preflight pod did not finish within 1s (phase Pending, ContainerCreating)"
    )
    assert "PREFLIGHT_POD_TIMEOUT_S=1800" in problem
    assert calls(tmp_path)[-1] == "delete pod ray-tune-preflight --wait=false"


def test_a_claim_that_binds_on_first_consumer_gets_the_write_pod(tmp_path: Path) -> None:
    objects = changed(
        **{
            f"pvc__{CLAIM}": pvc("standard-rwx", phase="Pending"),
            "storageclass__standard-rwx": {"volumeBindingMode": "WaitForFirstConsumer"},
        }
    )
    proc = preflight(tmp_path, objects)
    assert proc.returncode == 0, proc.stdout
    assert (
        f"ok: {CLAIM} is Pending, ReadWriteMany: class 'standard-rwx' binds on first consumer "
        "(the write pod below binds it)"
    ) in proc.stdout.splitlines()
    assert applied(tmp_path) is not None
    assert "and wrote to the volume as uid 1000" in proc.stdout.splitlines()[-1]


def test_a_pending_claim_with_immediate_binding_gets_no_write_pod(tmp_path: Path) -> None:
    proc = preflight(tmp_path, CASES["claim pending, immediate binding"][0])
    assert proc.returncode == 1
    assert applied(tmp_path) is None
    assert "pulled image" not in proc.stdout


AUTOSCALERS = {
    "GKE/AKS status ConfigMap": (
        {"configmap__cluster-autoscaler-status": {"data": {"status": "Health: Healthy"}}},
        "Cluster Autoscaler (ConfigMap kube-system/cluster-autoscaler-status)",
    ),
    "Cluster Autoscaler Deployment": (
        {
            "deployments": {
                "items": [
                    OPERATOR,
                    deployment(
                        "kube-system",
                        "cluster-autoscaler-aws-cluster-autoscaler",
                        "registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0",
                        {"app.kubernetes.io/name": "aws-cluster-autoscaler"},
                    ),
                ]
            }
        },
        "Cluster Autoscaler (Deployment kube-system/cluster-autoscaler-aws-cluster-autoscaler)",
    ),
    "Karpenter": ({"crd__nodepools.karpenter.sh": CRD}, "Karpenter (CRD nodepools.karpenter.sh)"),
}


@pytest.mark.parametrize("which", AUTOSCALERS)
def test_zero_t4_nodes_are_fine_only_with_a_node_autoscaler(tmp_path: Path, which: str) -> None:
    extra, named = AUTOSCALERS[which]
    objects = changed(nodes=gke_nodes(node("gke", "head", "cpu-a")), **extra)
    proc = preflight(tmp_path, objects)
    assert proc.returncode == 0, proc.stdout
    assert (
        f"ok: no node matches {T4_LABEL} yet; a node autoscaler ({named}) must add one: a wrong "
        "label would look the same — check the pool's labels"
    ) in proc.stdout.splitlines()
    # The operator is still told apart from the autoscaler's Deployment.
    assert "ok: KubeRay operator 1.7.0 (quay.io/kuberay/operator:v1.7.0)" in proc.stdout


def test_usable_t4_nodes_are_listed_beside_broken_ones(tmp_path: Path) -> None:
    nodes = gke_nodes(
        node("gke", "head", "cpu-a"),
        node("gke", "t4", "t4-a"),
        node("gke", "t4", "t4-b", allocatable={"nvidia.com/gpu": "0"}),
        node("gke", "t4", "t4-c", taints=[*GKE_T4_TAINT, *DEDICATED]),
    )
    proc = preflight(tmp_path, changed(nodes=nodes))
    assert proc.returncode == 1
    assert "ok: 1 T4 node(s) ready for workers: t4-a" in proc.stdout.splitlines()
    found = problems(proc)
    assert len(found) == 2, found
    assert "(t4-c: dedicated=ml:NoSchedule)" in found[0]
    assert "node(s) t4-b match" in found[1] and "device plugin missing" in found[1]


def test_the_head_check_honours_every_affinity_operator(tmp_path: Path) -> None:
    """EKS keeps the head off GPU nodes with NotIn on the instance type: a g4dn node is not
    admitted, an m5.large is; an untainted T4 node does not count as the head's."""
    nodes = gke_nodes(
        node("eks", "t4", "t4-a", taints=[]),
        node("eks", "head", "m5-a"),
    )
    proc = preflight(tmp_path, changed("eks", nodes=nodes), CLOUD="eks")
    assert (
        "ok: 1 node(s) can hold the head pod (1400m CPU, 5120Mi memory with the autoscaler "
        "sidecar and the submitter): m5-a"
    ) in proc.stdout.splitlines()
    proc = preflight(
        tmp_path, changed("eks", nodes=gke_nodes(node("eks", "t4", "t4-a", taints=[]))), CLOUD="eks"
    )
    (problem,) = problems(proc)
    assert problem.startswith(
        "problem: no node is admitted by the head's node affinity "
        "(node.kubernetes.io/instance-type notin (g4dn.xlarge,"
    ), problem


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
