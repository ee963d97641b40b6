"""What the runner keeps of a run: its containers, attempts, reclaims, outcome and options."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.runner.api import KubeApi
from tests.support.runner.podman import (
    GRACE_S,
    RESTART_DELAY_S,
    STATUS_CHECK_TIMEOUT_S,
)


@dataclass
class Container:
    """A pod with one container of ours (the head pod's autoscaler sidecar and a worker's
    init container ride along): Pending until scheduled, then Running."""

    name: str
    role: str  # head | worker | submitter
    restarts: int = 0
    exited_at: float | None = None
    group: str = ""
    spec: dict[str, Any] = field(default_factory=dict)  # the pod spec the scheduler reads
    labels: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # `podman run` arguments of the container
    secret: dict[str, str] = field(default_factory=dict)
    init: tuple[str, list[str], dict[str, str]] | None = None  # wait-gcs-ready
    # Pending -> Initializing (init running) -> Running; a reclaimed node's pod: Running ->
    # Terminating (its grace period) -> Failed, until KubeRay deletes it.
    phase: str = "Pending"
    node: str = ""
    reason: str = ""
    created: float = field(default_factory=time.monotonic)
    running_at: float | None = None


@dataclass
class Attempt:
    number: int
    cluster: str
    job_id: str
    network: str
    started: float = field(default_factory=time.monotonic)
    start_time: str = field(
        default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    ray: list[Container] = field(default_factory=list)
    submitters: list[Container] = field(default_factory=list)
    job_status: str = ""
    head_ip: str = ""
    api: KubeApi | None = None
    autoscaler: str = ""  # the sidecar's container name, once started
    ray_logs: Path | None = None  # KubeRay's ray-logs emptyDir at /tmp/ray (head, sidecar)
    deleted: list[str] = field(default_factory=list)  # worker pods deleted by workersToDelete
    vanished: list[str] = field(default_factory=list)  # worker pods gone by no rule of ours
    failed_deleted: list[str] = field(default_factory=list)  # Failed pods KubeRay deleted
    status_failing_since: float | None = None
    job_not_found: bool = False  # the last GetJobInfo was a 404
    job_info_failure: str | None = None  # what that 404 ended the RayJob with, if it did
    running_at: float | None = None
    job_running_at: float | None = None  # the Ray job's status first read as RUNNING


@dataclass
class Reclaim:
    """One Spot node taken back: the provider's notice, the pods' grace, the node gone."""

    node: str
    pods: list[str]
    notice_at: float  # time.monotonic()
    notice_s: float
    grace_s: float
    gone_at: float | None = None


@dataclass
class Outcome:
    deployment: str  # Complete | Failed | ValidationFailed | Suspending | Suspended | Rejected
    job_status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Options:
    """The runner's own knobs (command-line flags), none of which edit the manifest file."""

    values: dict[str, Any]  # the variant's values file: its nodes
    image: str | None = None  # the local image standing in for any image not present
    env: dict[str, str] = field(default_factory=dict)  # added to runtimeEnvYAML's env_vars
    idle_timeout_s: int | None = None  # replaces autoscalerOptions.idleTimeoutSeconds
    node_boot_s: float = 5.0
    node_idle_s: float = 10.0
    stockout_s: float = 0.0  # the GPU pool adds no node this long from the start (inf: never)
    status_check_timeout_s: float = STATUS_CHECK_TIMEOUT_S
    grace_s: int = GRACE_S  # terminationGracePeriodSeconds of a deleted cluster's pods
    restart_delay_s: float = RESTART_DELAY_S  # the kubelet's and the Job controller's back-off
    admit_after_s: float = 3.0  # Kueue: how long a queued RayJob waits for admission
    preempt_after_s: float | None = None  # Kueue: preempt once, this long after RUNNING
    preempt_when: Path | None = None  # Kueue: preempt once, when this file exists
    reclaim_when: Path | None = None  # Spot: reclaim one T4 node once, when this file exists
    # Spot: reclaim a T4 node at each of these seconds from the Ray job's start (seeded)
    reclaim_at: tuple[float, ...] = ()
    linger_s: float = 0.0  # keep a finished job's cluster (ttlSecondsAfterFinished) this long
    kueue_elastic_gate: bool = False  # Kueue's ElasticJobsViaWorkloadSlices gate is on
    keep_logs: bool = False  # every attempt's logs, not only failed and suspended ones'


def boot_seconds(flag: float | None, values: dict[str, Any]) -> float:
    """How long a new node takes to be Ready here: --node-boot-s, else the values file's
    nodes.t4.boot_s (null in every committed file: no provider states one), else 5 s."""
    if flag is not None:
        return flag
    return float((values.get("nodes", {}).get("t4") or {}).get("boot_s") or 5.0)


# The smoke RayJob's checks this runner cannot make real (jobs/smoke.py: SMOKE_SKIP): they
# print `skipped` with these reasons, never `ok`.
RUNNER_CANNOT = (
    "cuda=the podman runner's GPUs are Ray resources only: no CUDA device,"
    "network_policy=the podman runner does not enforce NetworkPolicies"
)


def with_options(doc: dict[str, Any], options: Options) -> dict[str, Any]:
    """The RayJob as a user would submit it with these settings: CI-sized env vars in the
    runtime env (as with runtimeEnvYAML) and a shorter idle timeout; the file is not edited."""
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    env = dict(options.env)
    if str(spec.get("entrypoint", "")).endswith("-m jobs.smoke"):
        env = {"SMOKE_SKIP": RUNNER_CANNOT} | env  # what this runner cannot make real
    if env:
        runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
        runtime_env.setdefault("env_vars", {}).update(env)
        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env)
    if options.idle_timeout_s is not None and spec.get("rayClusterSpec", {}).get(
        "enableInTreeAutoscaling"
    ):
        spec["rayClusterSpec"].setdefault("autoscalerOptions", {})["idleTimeoutSeconds"] = (
            options.idle_timeout_s
        )
    return doc
