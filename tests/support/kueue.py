"""What Kueue's RayJob webhook does to a RayJob, and what it counts, for the tests and the
podman runner (tests/support/runner/). Ported in our own words from kubernetes-sigs/kueue
(main, read 2026-08; the rules have been stable since the RayJob integration of 0.6):

- pkg/controller/jobs/rayjob/rayjob_webhook.go: Default (ApplyDefaultForSuspend: a job with
  a queue name is created suspended) and validateCreate (no clusterSelector beside a
  rayClusterSpec, a rayClusterSpec required, shutdownAfterJobFinishes required);
- pkg/controller/jobs/raycluster/common.go: ValidateCreate (no enableInTreeAutoscaling unless
  the job is elastic; at most MaxPodSets pod sets; no worker group named "head") and
  BuildPodSets (the head, each worker group at `replicas`, default 1, times numOfHosts);
- pkg/controller/jobs/rayjob/rayjob_controller.go addSubmitterPodSet (K8sJobMode: the
  submitter pod is one more pod set);
- pkg/controller/jobframework/validation.go ValidateQueueName (the label is a DNS-1123
  subdomain) and pkg/workloadslicing Enabled (elastic: the ElasticJobsViaWorkloadSlices gate
  and the annotation `kueue.x-k8s.io/elastic-job: "true"`, case-sensitive).

Not ported: topology-aware scheduling, MultiKueue, default local queues, priority classes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ELASTIC_ANNOTATION = "kueue.x-k8s.io/elastic-job"
MAX_POD_SETS = 18  # jobframework.MaxPodSets
HEAD_POD_SET = "head"
_DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def queue_name(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata", {}).get("labels") or {}).get(QUEUE_LABEL, ""))


def elastic(doc: dict[str, Any], *, gate: bool) -> bool:
    """workloadslicing.Enabled: the gate is on and the annotation says exactly "true"."""
    annotations = doc.get("metadata", {}).get("annotations") or {}
    return gate and annotations.get(ELASTIC_ANNOTATION) == "true"


def default(doc: dict[str, Any]) -> None:
    """The mutating webhook, in place: a RayJob that names a queue is created suspended
    (Kueue unsuspends it on admission)."""
    if queue_name(doc):
        doc["spec"]["suspend"] = True


def defaulted(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the RayJob as the mutating webhook leaves it."""
    out = copy.deepcopy(doc)
    default(out)
    return out


def webhook_errors(doc: dict[str, Any], *, elastic_gate: bool) -> list[str]:
    """The validating webhook's refusals of a RayJob's creation (empty: accepted). A RayJob
    without a queue name is not Kueue's (manageJobsWithoutQueueName off, the default)."""
    name = queue_name(doc)
    if not name:
        return []
    errors = []
    if len(name) > 253 or not _DNS_1123_SUBDOMAIN.fullmatch(name):
        errors.append(
            f"metadata.labels[{QUEUE_LABEL}]: Invalid value: {name!r}: a lowercase RFC 1123 "
            "subdomain must consist of lower case alphanumeric characters, '-' or '.'"
        )
    spec = doc.get("spec", {})
    selector, cluster = spec.get("clusterSelector"), spec.get("rayClusterSpec")
    if selector and cluster:
        return [
            *errors,
            "spec.clusterSelector: Invalid value: a kueue managed job should not use an "
            "existing cluster",
        ]
    if selector:
        return errors  # a RayJob on an existing cluster is not managed by Kueue
    if not cluster:
        return [
            *errors,
            "spec.rayClusterSpec: Required value: rayClusterSpec is required for "
            "Kueue-managed jobs that don't use clusterSelector",
        ]
    if not spec.get("shutdownAfterJobFinishes"):
        errors.append(
            "spec.shutdownAfterJobFinishes: Invalid value: false: a kueue managed job should "
            "delete the cluster after finishing"
        )
    if cluster.get("enableInTreeAutoscaling") and not elastic(doc, gate=elastic_gate):
        errors.append(
            "spec.rayClusterSpec.enableInTreeAutoscaling: Invalid value: true: a kueue managed "
            "job should only use autoscaling when workload slicing is enabled"
        )
    groups = cluster.get("workerGroupSpecs") or []
    if len(groups) + 1 > MAX_POD_SETS:
        errors.append(
            f"spec.rayClusterSpec.workerGroupSpecs: Too many: {len(groups) + 1}: must have "
            f"at most {MAX_POD_SETS} items"
        )
    for i, group in enumerate(groups):
        if group.get("groupName") == HEAD_POD_SET:
            errors.append(
                f"spec.rayClusterSpec.workerGroupSpecs[{i}].groupName: Forbidden: "
                f'"{HEAD_POD_SET}" is reserved for the head group'
            )
    return errors


def pod_sets(doc: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """The workload's pod sets (name, count, pod template) Kueue admits as a whole: the head,
    each worker group at its `replicas`, and the submitter in K8sJobMode."""
    spec = doc["spec"]
    cluster = spec["rayClusterSpec"]
    out = [(HEAD_POD_SET, 1, cluster["headGroupSpec"]["template"])]
    for group in cluster.get("workerGroupSpecs") or []:
        count = int(group["replicas"]) if group.get("replicas") is not None else 1
        count *= max(1, int(group.get("numOfHosts", 1)))
        out.append((group["groupName"], count, group["template"]))
    if spec.get("submissionMode", "K8sJobMode") == "K8sJobMode":
        out.append(("submitter", 1, spec.get("submitterPodTemplate") or {}))
    return out


def admitted_gpus(doc: dict[str, Any]) -> int:
    """nvidia.com/gpu the workload asks the queue for: what admission reserves."""
    total = 0
    for _, count, template in pod_sets(doc):
        for container in template.get("spec", {}).get("containers", []):
            requests = container.get("resources", {}).get("requests") or {}
            limits = container.get("resources", {}).get("limits") or {}
            total += count * int(requests.get("nvidia.com/gpu", limits.get("nvidia.com/gpu", 0)))
    return total
