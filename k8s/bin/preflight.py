"""Before spending GPU hours: does this Kubernetes cluster have what the RayJobs need?

    python k8s/bin/preflight.py            # make preflight TARGET=k8s

One line per check, `ok: ...` or `problem: ... (fix: ...)`; exit 1 on any problem:
- the KubeRay operator: the RayJob and RayCluster CRDs serve ray.io/v1, and the operator's
  Deployment runs the version the manifests are written for;
- the shared volume: the claim exists, is Bound and ReadWriteMany;
- the T4 nodes: which nodes match the worker group's nodeSelector, tolerate its taints and
  offer allocatable nvidia.com/gpu (none yet is fine when the pool scales from zero);
- a pod of our image, as uid 1000 with the pods' fsGroup, can write to the volume.
The node selector and tolerations are read from k8s/raycluster.yaml, the claim and the
image from k8s/results-reader.yaml (all rendered from k8s/values/t4.yaml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parents[1]
KUBECTL = os.environ.get("KUBECTL", "kubectl")
KUBERAY_VERSION = os.environ.get("KUBERAY_VERSION", "1.7.0")
WRITE_TIMEOUT_S = float(os.environ.get("PREFLIGHT_WRITE_TIMEOUT_S", "300"))
POD = "ray-tune-preflight"


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], capture_output=True, text=True, input=stdin)


def get(*args: str) -> dict[str, Any] | None:
    proc = kubectl("get", *args, "-o", "json")
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


class Report:
    def __init__(self) -> None:
        self.problems = 0

    def ok(self, text: str) -> None:
        print(f"ok: {text}", flush=True)

    def problem(self, text: str, fix: str) -> None:
        self.problems += 1
        print(f"problem: {text} (fix: {fix})", flush=True)


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
    deployments = get("deployments", "-A", "-l", "app.kubernetes.io/name=kuberay-operator") or {}
    images = [
        c["image"]
        for d in deployments.get("items", [])
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


def check_volume(report: Report, claim: str) -> bool:
    pvc = get("pvc", claim)
    if pvc is None:
        report.problem(f"PersistentVolumeClaim {claim} does not exist", "make storage")
        return False
    phase = pvc.get("status", {}).get("phase")
    modes = pvc.get("status", {}).get("accessModes") or pvc["spec"].get("accessModes", [])
    if phase != "Bound":
        report.problem(
            f"{claim} is {phase}, not Bound",
            "kubectl describe pvc: a storage class with ReadWriteMany (k8s/storage.yaml)",
        )
        return False
    if "ReadWriteMany" not in modes:
        report.problem(f"{claim} is {modes}, not ReadWriteMany", "an RWX class (k8s/storage.yaml)")
        return False
    report.ok(f"{claim} is Bound, ReadWriteMany")
    return True


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and tol.get("key") in (None, taint["key"]):
            return True
        if tol.get("key") == taint["key"] and tol.get("value") == taint.get("value"):
            return True
    return False


def check_nodes(report: Report, pod: dict[str, Any]) -> None:
    selector = pod.get("nodeSelector", {})
    tolerations = pod.get("tolerations", [])
    label = ",".join(f"{k}={v}" for k, v in selector.items())
    nodes = (get("nodes", "-l", label) or {}).get("items", [])
    if not nodes:
        report.ok(
            f"no node matches {label} yet: the autoscaler has to add them (scale from zero); "
            "check that the T4 node pool can scale up"
        )
        return
    usable, blocked, no_gpu = [], [], []
    for node in nodes:
        name = node["metadata"]["name"]
        hard = [t for t in node["spec"].get("taints", []) if t.get("effect") != "PreferNoSchedule"]
        if not all(_tolerated(t, tolerations) for t in hard):
            blocked.append(name)
        elif int(node["status"].get("allocatable", {}).get("nvidia.com/gpu", "0")) < 1:
            no_gpu.append(name)
        else:
            usable.append(name)
    if blocked:
        report.problem(
            f"nodes {blocked} match {label} but have taints the workers do not tolerate",
            "add the taint to worker.tolerations in k8s/values/t4.yaml, then make manifests",
        )
    if no_gpu:
        report.problem(
            f"nodes {no_gpu} match {label} but offer no allocatable nvidia.com/gpu",
            "install the NVIDIA device plugin (or GPU operator) on that pool",
        )
    if usable:
        report.ok(f"{len(usable)} T4 node(s) ready for workers: {', '.join(usable)}")


def _writer_pod(reader: dict[str, Any], fs_group: int) -> dict[str, Any]:
    """The results reader, turned into a one-shot writer of a probe file as uid 1000."""
    pod = json.loads(json.dumps(reader))
    pod["metadata"]["name"] = POD
    pod["metadata"]["labels"]["app.kubernetes.io/component"] = "preflight"
    pod["spec"]["securityContext"] |= {"fsGroup": fs_group, "fsGroupChangePolicy": "OnRootMismatch"}
    (container,) = pod["spec"]["containers"]
    container["command"] = [
        "bash",
        "-c",
        'f=/mnt/cluster_storage/.preflight-$HOSTNAME && touch "$f" && stat -c "%u" "$f" && rm "$f"',
    ]
    container["volumeMounts"][0]["readOnly"] = False
    pod["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = False
    return pod


def check_write(report: Report, reader: dict[str, Any], fs_group: int) -> None:
    pod = _writer_pod(reader, fs_group)
    kubectl("delete", "pod", POD, "--ignore-not-found", "--wait=true")  # one left from before
    applied = kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    if applied.returncode != 0:
        report.problem(
            f"cannot create the preflight pod: {applied.stderr.strip()}",
            "check that you may create pods in this namespace (kubectl auth can-i create pods)",
        )
        return
    try:
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        phase = ""
        while time.monotonic() < deadline:
            phase = kubectl("get", "pod", POD, "-o", "jsonpath={.status.phase}").stdout.strip()
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(2)
        logs = kubectl("logs", POD).stdout.strip()
        if phase == "Succeeded" and logs.splitlines()[-1:] == ["1000"]:
            report.ok("a pod of the image wrote to the volume as uid 1000")
        else:
            report.problem(
                f"a pod of the image could not write to the volume as uid 1000 "
                f"(phase {phase or 'unknown'}: {logs[-300:]})",
                "EFS: an access point with uid/gid 1000/100; NFS: export it writable for "
                "group 100; Filestore: fsGroupChangePolicy OnRootMismatch (README: Storage)",
            )
    finally:
        kubectl("delete", "pod", POD, "--wait=false")


def main() -> int:
    cluster = yaml.safe_load((K8S / "raycluster.yaml").read_text())["spec"]
    reader = yaml.safe_load((K8S / "results-reader.yaml").read_text())
    worker_pod = cluster["workerGroupSpecs"][0]["template"]["spec"]
    claim = reader["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    fs_group = cluster["headGroupSpec"]["template"]["spec"]["securityContext"]["fsGroup"]
    report = Report()
    check_operator(report)
    if check_volume(report, claim):
        check_write(report, reader, fs_group)
    check_nodes(report, worker_pod)
    return 1 if report.problems else 0


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit(0)
    if sys.argv[1:]:
        print(f"error: preflight takes no arguments, got {sys.argv[1:]}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
