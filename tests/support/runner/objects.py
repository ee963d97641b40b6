"""The Kubernetes objects the API stand-in serves: a RayJob's RayCluster, its pods, CRD checks."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

INT32_MAX = 2**31 - 1


def raycluster_for_rayjob(
    rayjob: dict[str, Any], name: str, namespace: str = "default"
) -> dict[str, Any]:
    """The RayCluster KubeRay creates for a RayJob attempt (constructRayClusterForRayJob), as the
    API server stores it: the RayJob's labels and annotations plus the originated-from labels,
    the rayClusterSpec with the CRD's defaults, and `scaleStrategy: {}` in every worker group
    (a non-pointer struct, which Go's JSON encoding writes although it is omitempty)."""
    meta = rayjob.get("metadata", {})
    spec = copy.deepcopy(rayjob["spec"]["rayClusterSpec"])
    for group in spec.get("workerGroupSpecs", []) or []:
        group.setdefault("replicas", 0)
        group.setdefault("minReplicas", 0)
        group.setdefault("maxReplicas", INT32_MAX)
        group.setdefault("numOfHosts", 1)
        group.setdefault("priority", 0)
        group.setdefault("scaleStrategy", {})
    labels = dict(meta.get("labels", {}) or {})
    labels["ray.io/originated-from-cr-name"] = meta.get("name", "")
    labels["ray.io/originated-from-crd"] = "RayJob"
    labels["ray.io/job-submission-mode"] = rayjob["spec"].get("submissionMode", "K8sJobMode")
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if meta.get("annotations"):
        metadata["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata, "spec": spec}


def pod_object(
    name: str,
    labels: dict[str, str],
    *,
    namespace: str = "default",
    ip: str | None = None,
    state: str | None = "running",
    container: str = "ray-worker",
    deleting: bool = False,
) -> dict[str, Any]:
    """A Pod as the autoscaler reads it: metadata.name/labels (ray.io/cluster, ray.io/group,
    ray.io/node-type), status.podIP, and the first container status's state, which Ray maps
    to its node status ("running" is up; "waiting"; "terminated" is failed; None: no status
    yet, pending). "backoff": a container that exited under restartPolicy Always, waiting for
    the kubelet to start it again (phase Running, state waiting CrashLoopBackOff, the exit in
    lastState): not running for Ray, and not a pod KubeRay deletes (shouldDeletePod).
    `deleting` sets metadata.deletionTimestamp, which Ray skips."""
    phase = {"running": "Running", "backoff": "Running", "terminated": "Failed"}.get(
        state or "", "Pending"
    )
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
    if state is not None:
        exited = {"exitCode": 1, "reason": "Error"}
        shown: dict[str, Any] = {
            "running": {"running": {"startedAt": _now()}},
            "waiting": {"waiting": {"reason": "ContainerCreating"}},
            "backoff": {"waiting": {"reason": "CrashLoopBackOff"}},
            "terminated": {"terminated": exited},
        }[state]
        container_status = {"name": container, "ready": state == "running", "state": shown}
        if state == "backoff":
            container_status["lastState"] = {"terminated": exited}
        status["containerStatuses"] = [container_status]
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if deleting:
        metadata["deletionTimestamp"] = _now()
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def crd_validator(crd_path: Path) -> Callable[[dict[str, Any]], None]:
    """A check of a RayCluster against the CRD's schema (jsonschema, imported only here), as the
    API server validates a patched object; raises ValueError with the first error."""
    import jsonschema  # only a caller that validates needs it
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is large
    crd = yaml.load(Path(crd_path).read_text(), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])

    def validate(obj: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path)
            raise ValueError(f"{where}: {error.message}")

    return validate


# ---------------------------------------------------------------------------------------------
# Certificates.
