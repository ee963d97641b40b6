"""jobs/kube/preflight.py (make preflight TARGET=k8s CLOUD=...) against clusters played by the
stand-in kubectl: a healthy one per variant, built from the node shapes its values file
declares, and one broken thing at a time, each named for what it is, with its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kuberay.fake_kubectl import calls
from tests.support.pod_security import violations
from tests.support.preflight_cluster import (
    CLAIM,
    CRD,
    HEAD_SHAPE,
    OPERATOR,
    PLUGINS,
    POD,
    T4_LABEL,
    applied,
    changed,
    deployment,
    folder,
    gke_nodes,
    head_template,
    healthy,
    node,
    preflight,
    problems,
    pvc,
)

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
