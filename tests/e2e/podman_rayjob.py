"""Run a RayJob manifest the way KubeRay v1.7.0, the kube-scheduler, a node autoscaler and
the kubelets would, in podman containers.

    python -m tests.e2e.podman_rayjob k8s/kind/rayjob-tune.yaml     # make e2e-podman STAGE=tune
    python -m tests.e2e.podman_rayjob k8s/rayjob-asha.yaml --image IMAGE --env TRAIN_LIMIT=2048
                                                  # the default cloud variant, autoscaling from zero

Any variant's manifest runs (k8s/rayjob-<stage>.yaml, k8s/<variant>/...): its values file
(k8s/values/<variant>.yaml, found from the manifest's folder or --values) declares the nodes
(tests/e2e/nodes.py): every pod waits Pending, with the scheduler's reason, until a node it
fits and selects and tolerates is Ready; a GPU pool adds a node for a pending pod (Ready
after --node-boot-s) up to its max_nodes and removes one left empty for --node-idle-s.
Images that cannot be here (the GPU image, Ray's CPU image) run as --image, the local CPU
image, and say so: a `nvidia.com/gpu` limit still becomes `ray start --num-gpus`, the
container gets no device, and training falls back to the CPU.

What happens, with the KubeRay function each step follows (tests/support/kuberay/ has the ports):
- the spec is validated first (ValidateRayJobSpec); a refused one ends as ValidationFailed;
- per attempt, a cluster `<rayjob>-xxxxx` on its own podman network: the head container
  reachable under its Service's name and FQDN (service.go), a container per worker replica
  after its `wait-gcs-ready` init container, each running the `ray start` command pod.go
  builds from rayStartParams, the group `resources` and the container's limits, with the
  pod's env plus KubeRay's, user/group/fsGroup, dropped capabilities, no-new-privileges,
  CPU and memory limits, /dev/shm as KubeRay sizes it, KubeRay's labels, and the claim
  mounted from a host folder that outlives the run (group 100, setgid, like fsGroup);
- token authentication: one generated token in every Ray container and the submitter;
- once every Ray container is ready, the submitter container runs job.go's command; a
  failed submitter pod is replaced up to the submitter Job's backoffLimit (2);
- a Ray container that exits is restarted in place after 10 s (restartPolicy Always),
  served to the autoscaler meanwhile as a Running pod whose container waits in
  CrashLoopBackOff, not as running; a worker pod that is gone (its container removed: a
  node lost) is no longer listed, and the next reconcile creates a new pod under a new name
  (reconcilePods' diff; tests/support/kuberay/reconcile.py);
- a stockout (--stockout-s S): the GPU pool adds no node for S seconds (inf: never), each
  pending pod saying why; the sidecar runs Ray's autoscaler v1 (no autoscalerOptions.version,
  no RAY_enable_autoscaler_v2), which keeps the worker it asked for Pending with no timeout
  of its own (StandardAutoscaler.terminate_unhealthy_nodes skips a node not up-to-date):
  the driver's GPU_WAIT_S decides;
- Spot (a values file with `spot: true`: the T4 pool's nodes carry its Spot labels and
  taints): --reclaim-when FILE reclaims one T4 node that holds a pod, once, when FILE exists
  while the Ray job runs (or --reclaim-schedule SEED:MEAN_S:COUNT: at seeded times, gaps
  exponential with that mean), on the values' spot_reclaim terms: the node is cordoned, its pods'
  containers get SIGTERM and SIGKILL after grace_s (a paused one too), the pods are left
  Failed (Terminated), KubeRay deletes them (shouldDeletePod) and reconcilePods creates new
  ones, which wait Pending until the pool adds a node; the VM is gone after notice_s. The
  outcome lists each reclaim (node, pods, notice, grace, when it came and went);
- an emptyDir is a folder on disk per pod, shared by its containers and deleted with it;
  only a `medium: Memory` one (KubeRay's /dev/shm) is a tmpfs counted against memory;
- with enableInTreeAutoscaling, the autoscaler sidecar as BuildAutoscalerContainer builds
  it (`ray kuberay-autoscaler`, its env, resources and securityContext, the shared
  /tmp/ray) in the head's network namespace, against tests/e2e/kube_api.py: a stand-in
  Kubernetes API over TLS with a generated CA and token mounted where in-cluster clients
  read them, serving only the calls Ray's KubeRay provider makes (any other is refused and
  printed). Its patches are applied as the RayCluster controller does: worker pods for a
  higher `replicas`, the pods named in `workersToDelete` deleted;
- activeDeadlineSeconds counts per attempt and ends the RayJob (DeadlineExceeded is not
  retried); preRunningDeadlineSeconds fails an attempt that is not Running in time
  (retried); dashboard checks failing for --status-check-timeout-s (KubeRay's
  RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS, 300) end it (not retried), a 404 for the job id
  excepted: it waits while the submitter runs, and fails the RayJob (AppFailed) once the
  submitter finished (the Running case after GetJobInfo); any other failure
  deletes the attempt's pods in the background, SIGTERM then SIGKILL after the pod's grace
  period, while the next attempt's cluster starts on the same volume and `backoffLimit`
  allows (rayjob_controller.go); containers get no swap (--memory-swap = --memory);
- `spec.suspend`, and Kueue for a RayJob labelled kueue.x-k8s.io/queue-name (its webhook,
  tests/support/kueue.py): a RayJob Kueue's validating webhook refuses is never created
  (status Rejected); one it accepts is created suspended (ApplyDefaultForSuspend). KubeRay
  takes a suspended RayJob to Suspended with no cluster (updateStatusToSuspendingIfNeeded,
  the Suspending case). Kueue admits it after --admit-after-s: spec.suspend false, and
  KubeRay goes Suspended -> New -> Initializing with a new job id and cluster name
  (initRayJobStatusIfNeed), the deadlines counting from there. With --preempt-after-s N (or
  --preempt-when FILE), Kueue preempts it once, N s after the first attempt's Ray job turned
  RUNNING (or once FILE exists while it runs: a test creates it on the event it waited for):
  spec.suspend true; KubeRay goes Running -> Suspending, deletes the cluster and the
  submitter Job (deleteClusterResources, deleteSubmitterJob: their pods terminate in the
  background, nothing stops the Ray job first), clears the job id, cluster name and job
  status, and ends Suspended without counting a failed attempt; Kueue's next admission
  starts a new cluster on the same volume. Quota, flavors and workload slices are not
  modelled (admission always succeeds, an elastic job's scale-ups too); a suspended RayJob
  without a queue label ends the run, since nothing would unsuspend it.
The last line printed is one JSON object: status, attempts, suspensions, image, volume, ...

Only Ray's own `ray start` / `ray job` / `ray kuberay-autoscaler` commands run in the
containers. Not reproduced: probes beyond readiness at start, Services' load balancing, real
GPUs, and the TTL: containers are removed when the run ends (logs of a failed run are kept),
except that --linger-s keeps a finished job's cluster, as ttlSecondsAfterFinished does, while
the autoscaler removes its idle workers (until none is left, at most that long).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kube_api import KubeApi, pod_object, raycluster_for_rayjob
from tests.e2e.nodes import Cluster as Nodes
from tests.e2e.nodes import reclaim_schedule
from tests.support import kueue
from tests.support.kuberay import pods, submitter
from tests.support.kuberay.reconcile import (
    JobInfo,
    on_job_info,
    should_delete_pod,
    workers_to_add,
)
from tests.support.kuberay.validation import validate_rayjob

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "tests" / "e2e" / "containers.conf"
STORAGE_CLAIM_MOUNT = "/mnt/cluster_storage"
FS_GROUP_DEFAULT = 100
RESTART_DELAY_S = 10.0  # the kubelet's first crash-loop back-off
POLL_S = 2.0
RUN_LABEL = "io.ray-tune-k8s.e2e-run"
EMPTY_DIRS = "empty-dirs"  # under the run's work folder: the pods' disk-backed emptyDirs
GRACE_S = 30  # terminationGracePeriodSeconds' default: SIGTERM, then SIGKILL
STATUS_CHECK_TIMEOUT_S = 300  # DEFAULT_RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS (constant.go)
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_START = time.monotonic()
# rand.String's alphabet in k8s.io/apimachinery (GenerateRayClusterName, GenerateRayJobId).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def log(message: str) -> None:
    print(f"[kuberay +{time.monotonic() - _START:7.1f}s] {message}", flush=True)


def suffix() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(5))


class Podman:
    """The podman commands this run makes; it remembers what it created, to remove only that."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.env = os.environ | {
            "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))
        }
        self.containers: list[str] = []
        self.networks: list[str] = []

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            env=self.env | (env or {}),
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {args[0]} failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout.strip()

    def network(self, name: str) -> None:
        self("network", "create", "--label", f"{RUN_LABEL}={self.run_id}", name)
        self.networks.append(name)

    def run(self, name: str, args: list[str], secret_env: dict[str, str]) -> None:
        self.containers.append(name)
        # Secret values travel in the environment of `podman run`, never in its argv.
        flags = [a for key in secret_env for a in ("--env", key)]
        self(
            "run",
            "-d",
            "--name",
            name,
            "--label",
            f"{RUN_LABEL}={self.run_id}",
            *flags,
            *args,
            env=secret_env,
        )

    def state(self, name: str) -> tuple[str, int]:
        out = self(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name, check=False
        )
        status, _, code = out.partition(" ")
        return (status or "missing", int(code or 0))

    def save_logs(self, name: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["podman", "logs", name], capture_output=True, text=True, env=self.env
        )
        (folder / f"{name}.log").write_text(proc.stdout + proc.stderr)

    def remove(self, names: list[str], grace_s: int = 5) -> None:
        """SIGTERM, SIGKILL after grace_s, then remove (a pod's deletion): in one command, so
        that the grace periods run side by side, as the kubelets terminate pods."""
        if names:
            self("rm", "-f", "-i", "-t", str(grace_s), *names, check=False)
        for name in names:
            if name in self.containers:
                self.containers.remove(name)

    def stop(self, names: list[str], grace_s: float) -> None:
        """The kubelet's termination: SIGTERM, then SIGKILL to what still runs after grace_s
        (a paused container too: its signals wait, SIGKILL ends it). The containers stay: a
        pod the kubelet terminated is still listed, Failed, until its controller deletes it."""
        if not names:
            return
        self("kill", "--signal", "TERM", *names, check=False)
        deadline = time.monotonic() + grace_s
        live = names
        while live and time.monotonic() < deadline:
            time.sleep(0.5)
            live = [n for n in live if self.state(n)[0] in ("running", "paused")]
        if live:
            self("kill", "--signal", "KILL", *live, check=False)

    def remove_network(self, name: str) -> None:
        self("network", "rm", "-f", name, check=False)
        if name in self.networks:
            self.networks.remove(name)

    def cleanup(self) -> None:
        self.remove(list(self.containers))
        for name in list(self.networks):
            self.remove_network(name)


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


class RayJobRun:
    def __init__(
        self, manifest: Path, volume: Path, work: Path, run_id: str, options: Options
    ) -> None:
        (original,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        self.doc = with_options(original, options)
        self.options = options
        self.manifest = manifest
        self.name: str = self.doc["metadata"]["name"]
        self.spec: dict[str, Any] = self.doc["spec"]
        self.cluster_spec: dict[str, Any] = self.spec.get("rayClusterSpec", {})
        self.autoscaling = bool(self.cluster_spec.get("enableInTreeAutoscaling"))
        # The pods KubeRay builds from the spec, as the scheduler sees them (sidecar, init).
        self.pod_specs = {role: p["spec"] for role, p in pods.cluster_pods(self.doc).items()}
        self.volume = volume
        self.work = work
        self.podman = Podman(run_id)
        self.nodes = Nodes(
            options.values,
            boot_s=options.node_boot_s,
            idle_s=options.node_idle_s,
            stockout_s=options.stockout_s,
            log=log,
        )
        auth = self.cluster_spec.get("authOptions", {}).get("mode", "disabled") == "token"
        self.token = secrets.token_urlsafe(32) if auth else None
        self.failed = self.succeeded = 0
        self.queue = kueue.queue_name(self.doc) or None
        self.suspensions = 0  # an admitted RayJob suspended again (Kueue's preemption)
        self.admissions = 0
        self.attempts: list[Attempt] = []
        self.submitter_pods = 0
        self.ray_restarts = 0
        self.mapped: dict[str, str] = {}
        self.clamped: set[str] = set()
        self.refused: list[str] = []
        self.workers_created = 0
        self.max_workers = 0
        self.workers_left: int | None = None  # after the TTL window (--linger-s), if any
        self.scale_up_s: float | None = None  # job Running -> first worker's Ray node alive
        self.deleting: list[threading.Thread] = []
        self.released: list[str] = []  # pods whose background deletion ended
        self.reclaims: list[Reclaim] = []
        self.reclaim_event_done = False  # --reclaim-when's one reclaim happened
        self.reclaims_due = list(options.reclaim_at)  # the seeded schedule's still to come
        self.started = time.monotonic()
        self._lock = threading.Lock()

    # --- pods --------------------------------------------------------------------------

    def _image(self, container: dict[str, Any]) -> str:
        """imagePullPolicy IfNotPresent on a node that cannot pull: the image must be here, or
        --image stands in for it (the GPU image cannot be built here, nor anything pulled)."""
        image = container["image"]
        if image in self.mapped:
            return self.mapped[image]
        exists = subprocess.run(["podman", "image", "exists", image], env=self.podman.env)
        if exists.returncode == 0:
            self.mapped[image] = image
        elif self.options.image:
            self.mapped[image] = self.options.image
            log(
                f"image {image} cannot be pulled or built here: running {self.options.image} "
                "(the local CPU image) in its place"
            )
        else:
            raise SystemExit(
                f"error: image {image} is not present and nothing can be pulled here: "
                "build it with `make image-offline` (or `make image-cpu` where images can be "
                "pulled), or name a local stand-in with --image"
            )
        return self.mapped[image]

    def _security(self, pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
        pod_sc = pod.get("securityContext", {})
        sc = container.get("securityContext", {})
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", FS_GROUP_DEFAULT))
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False))
        if non_root and (uid is None or int(uid) == 0):
            raise SystemExit(
                f"error: {container['name']}: runAsNonRoot without a non-zero runAsUser"
            )
        flags = ["--user", f"{uid}:{gid}"] if uid is not None else []
        if "fsGroup" in pod_sc:
            flags += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        for cap in sc.get("capabilities", {}).get("drop", []):
            flags += ["--cap-drop", cap]
        for cap in sc.get("capabilities", {}).get("add", []):
            flags += ["--cap-add", cap]
        if sc.get("readOnlyRootFilesystem"):
            # Only the pod's own writable mounts, not podman's default tmpfs at /tmp and /run.
            flags += ["--read-only", "--read-only-tmpfs=false"]
        profile = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if profile not in (None, "RuntimeDefault"):
            raise SystemExit(f"error: seccompProfile {profile} is not emulated (RuntimeDefault is)")
        return flags

    def _limits(self, container: dict[str, Any]) -> list[str]:
        limits = container.get("resources", {}).get("limits", {})
        flags = []
        if "cpu" in limits:
            cpus = pods.quantity(limits["cpu"])
            host = float(os.cpu_count() or 1)
            if cpus > host:  # runc refuses a quota above the machine's cores
                if container["name"] not in self.clamped:
                    self.clamped.add(container["name"])
                    log(
                        f"{container['name']}: cpu limit {limits['cpu']} capped at this "
                        f"machine's {host:g} cores (Ray still counts the limit's CPUs)"
                    )
                cpus = host
            flags += ["--cpus", f"{cpus:g}"]
        if "memory" in limits:
            # Kubernetes nodes run without swap: nothing beyond the memory limit.
            memory = str(pods.value(limits["memory"]))
            flags += ["--memory", memory, "--memory-swap", memory]
        return flags

    def _mounts(
        self, pod: dict[str, Any], pod_name: str, container: dict[str, Any], shm: pods.Shm | None
    ) -> list[str]:
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        flags = []
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            path = mount["mountPath"]
            if path == "/dev/shm":
                continue  # below, from `shm`
            if "persistentVolumeClaim" in volume:
                flags += ["--volume", f"{self.volume}:{path}"]
            elif volume.get("emptyDir", {}).get("medium") == "Memory":
                # A memory-backed emptyDir: a tmpfs, counted against the memory limit.
                flags += ["--mount", f"type=tmpfs,destination={path},tmpfs-mode=1777"]
            elif "emptyDir" in volume:
                # The default medium: a folder on the node's disk, shared by the pod's
                # containers (an init container's too), ephemeral storage and not memory (a
                # tmpfs here made Ray's /tmp/ray count against the memory limit), writable by
                # the pod's users, deleted with the pod.
                folder = self._empty_dir(pod_name, mount["name"])
                flags += ["--volume", f"{folder}:{path}"]
            else:
                raise SystemExit(
                    f"error: volume {mount['name']}: only PVCs and emptyDirs are emulated"
                )
        if shm is not None:
            size = shm.size_bytes or pods.value(
                container.get("resources", {}).get("limits", {}).get("memory", "1Gi")
            )
            flags += ["--shm-size", str(size)]
        return flags

    def _empty_dir(self, pod_name: str, volume: str) -> Path:
        folder = self.work / EMPTY_DIRS / pod_name / volume
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o1777)
        return folder

    def _remove_empty_dirs(self, pod_names: list[str]) -> None:
        for name in pod_names:
            shutil.rmtree(self.work / EMPTY_DIRS / name, ignore_errors=True)

    def _ray_pod(self, attempt: Attempt, group: dict[str, Any], *, head: bool) -> Container:
        pod = group["template"]["spec"]
        container = pods.ray_container(pod)
        fqdn = pods.head_fqdn(attempt.cluster)
        head_group = self.cluster_spec["headGroupSpec"]
        port = pods.head_port(head_group)
        params = pods.start_params(
            group, head=head, fqdn=fqdn, port=port, autoscaling=self.autoscaling
        )
        command = pods.start_command(params, head=head)
        group_name = "headgroup" if head else group["groupName"]
        name = (
            f"{attempt.cluster}-head-{suffix()}"
            if head
            else f"{attempt.cluster}-{group_name}-worker-{suffix()}"
        )
        user_env = {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
        env = pods.container_env(
            user_env,
            cluster=attempt.cluster,
            group=group_name,
            pod=name,
            head=head,
            fqdn=fqdn,
            port=port,
            command=command,
            token=self.token,
        )
        image = self._image(container)
        labels = pods.labels(
            group["template"],
            cluster=attempt.cluster,
            group=group_name,
            head=head,
            group_labels=group.get("labels"),
        )
        common = [
            "--network",
            attempt.network,
            *self._security(pod, container),
            *[f for k, v in labels.items() for f in ("--label", f"{k}={v}")],
        ]
        init = None
        if not head:
            # wait-gcs-ready polls the head's GCS through its Service: a copy of the Ray
            # container's user env and mounts, plus FQ_RAY_IP/RAY_IP and the auth variables,
            # with its own 200m/256Mi (DefaultWorkerPodTemplate, setInitContainerEnvVars).
            init_env = user_env | {"FQ_RAY_IP": fqdn, "RAY_IP": fqdn.split(".")[0]}
            if self.token is not None:
                init_env["RAY_AUTH_MODE"] = "token"
            init = (
                f"{name}-init",
                [
                    *common,
                    *self._limits(
                        {"name": "wait-gcs-ready", "resources": {"limits": pods.INIT_RESOURCES}}
                    ),
                    *[f for k, v in init_env.items() for f in ("--env", f"{k}={v}")],
                    *self._mounts(pod, name, container, None),
                    "--entrypoint",
                    "/bin/bash",
                    image,
                    *pods.wait_gcs_ready(fqdn, port)[1:],
                ],
                {"RAY_AUTH_TOKEN": self.token} if self.token else {},
            )
        secret = {k: env.pop(k) for k in list(env) if k == "RAY_AUTH_TOKEN"}
        args = [
            *common,
            *self._limits(container),
            "--hostname",
            name,
            *[f for k, v in env.items() for f in ("--env", f"{k}={v}")],
            *self._mounts(pod, name, container, pods.dev_shm(pod, params)),
        ]
        if head:
            args += ["--network-alias", pods.head_service(attempt.cluster), "--network-alias", fqdn]
            if attempt.ray_logs is not None:  # KubeRay's ray-logs emptyDir, shared with the sidecar
                args += ["--volume", f"{attempt.ray_logs}:/tmp/ray"]
        args += ["--entrypoint", "/bin/bash", image, *pods.container_args(command)[1:]]
        role = "head" if head else "worker"
        spec = self.pod_specs["head" if head else f"worker-{group_name}"]
        c = Container(
            name,
            role,
            group=group_name,
            spec=spec,
            labels=labels,
            args=args,
            secret=secret,
            init=init,
        )
        attempt.ray.append(c)
        root = "read-only root" if "--read-only" in args else "writable root"
        gpus = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        note = (
            f"; nvidia.com/gpu {gpus} -> --num-gpus (no device here: training falls back to CPU)"
            if gpus
            else ""
        )
        log(f"attempt {attempt.number}: {role} pod {name} ({root}): {command.strip()}{note}")
        return c

    def _autoscaler(self, attempt: Attempt, head: Container) -> None:
        """The sidecar as BuildAutoscalerContainer builds it, with the manifest's
        autoscalerOptions merged (mergeAutoscalerOverrides), in the head's network namespace,
        and the stand-in API server it calls (started once the head's network exists)."""
        gateway = self.podman(
            "network", "inspect", attempt.network, "--format", "{{(index .Subnets 0).Gateway}}"
        )
        cluster = raycluster_for_rayjob(self.doc, attempt.cluster)
        api = KubeApi(
            cluster,
            pods=lambda: self._pod_objects(attempt),
            on_patch=lambda ops, obj: log(
                f"attempt {attempt.number}: autoscaler patched the RayCluster: "
                + json.dumps(ops, separators=(",", ":"))
            ),
            host=gateway,
            names=[gateway],
            credentials_dir=self.work / f"serviceaccount-{attempt.number}",
            log=lambda line: log(f"kube-api: {line}"),
        )
        api.start()
        attempt.api = api
        options = self.cluster_spec.get("autoscalerOptions", {})
        start = (
            f"ray kuberay-autoscaler --cluster-name {attempt.cluster} "
            f"--cluster-namespace {pods.NAMESPACE}"
        )  # $(RAY_CLUSTER_NAME) and $(RAY_CLUSTER_NAMESPACE), expanded as the kubelet does
        env = {
            "RAY_CLUSTER_NAME": attempt.cluster,
            "RAY_CLUSTER_NAMESPACE": pods.NAMESPACE,
            "RAY_HEAD_POD_NAME": head.name,
            "KUBERAY_CRD_VER": "v1",
            "KUBERAY_GEN_AUTOSCALER_START_CMD": start,
            **api.pod_env(gateway),  # what the kubelet gives every container
            **{e["name"]: str(e.get("value", "")) for e in options.get("env", [])},
        }
        secret = {}
        if self.token is not None:  # SetContainerTokenAuthEnvVars
            env["RAY_AUTH_MODE"] = "token"
            secret["RAY_AUTH_TOKEN"] = self.token
        sidecar = {
            "name": "autoscaler",
            "resources": options.get(
                "resources",
                {"limits": {"cpu": "500m", "memory": "512Mi"}},
            ),
            "securityContext": options.get("securityContext", {}),
        }
        pod = self.cluster_spec["headGroupSpec"]["template"]["spec"]
        name = f"{head.name}-autoscaler"
        image = self._image({"image": options.get("image") or pods.ray_container(pod)["image"]})
        self.podman.run(
            name,
            [
                "--network",
                f"container:{head.name}",
                *self._security(pod, sidecar),
                *self._limits(sidecar),
                *[f for k, v in env.items() for f in ("--env", f"{k}={v}")],
                "--volume",
                f"{api.credentials_dir}:{SERVICE_ACCOUNT_DIR}:ro",
                "--volume",
                f"{attempt.ray_logs}:/tmp/ray",
                "--entrypoint",
                "/bin/bash",
                image,
                "-c",
                "--",
                start,
            ],
            secret,
        )
        attempt.autoscaler = name
        log(
            f"attempt {attempt.number}: autoscaler sidecar {name}: {start} "
            f"(Kubernetes API stand-in at {api.url})"
        )

    def _pod_objects(self, attempt: Attempt) -> list[dict[str, Any]]:
        """The attempt's Ray pods as the API serves them to the autoscaler."""
        out = []
        with self._lock:
            containers = list(attempt.ray)
        for c in containers:
            state = {
                "Pending": None,
                "Initializing": "waiting",
                "Running": "running",
                "Terminating": "running",  # a node shutdown's grace period: still Running
                "Failed": "terminated",
            }[c.phase]
            if state == "running" and c.exited_at is not None:  # the kubelet's back-off
                state = "backoff"
            out.append(
                pod_object(
                    c.name,
                    c.labels,
                    state=state,
                    container="ray-head" if c.role == "head" else "ray-worker",
                )
            )
        return out

    def _new_cluster(self, attempt: Attempt) -> None:
        self.podman.network(attempt.network)
        if self.autoscaling:
            attempt.ray_logs = self.work / f"ray-logs-{attempt.number}"
            attempt.ray_logs.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PermissionError):
                os.chown(attempt.ray_logs, 1000, FS_GROUP_DEFAULT)
            attempt.ray_logs.chmod(0o2777)
        self._ray_pod(attempt, self.cluster_spec["headGroupSpec"], head=True)
        self._reconcile_workers(attempt)

    def _desired(self, attempt: Attempt) -> list[tuple[dict[str, Any], int, list[str]]]:
        """Per worker group: its spec, replicas, and workersToDelete, from the RayCluster
        (the API's copy, which the autoscaler patches, or the manifest's)."""
        groups = (
            attempt.api.cluster()["spec"]["workerGroupSpecs"]
            if attempt.api is not None
            else self.cluster_spec.get("workerGroupSpecs", [])
        )
        return [
            (
                g,
                int(g.get("replicas", g.get("minReplicas", 0)) or 0),
                list((g.get("scaleStrategy") or {}).get("workersToDelete") or []),
            )
            for g in groups
        ]

    def _reconcile_workers(self, attempt: Attempt) -> None:
        """reconcilePods: the pods named in workersToDelete are deleted; then a group with
        fewer pods than `replicas` gets new ones (with autoscaling on, surplus pods are left
        to the autoscaler: no random deletion)."""
        for group, replicas, to_delete in self._desired(attempt):
            mine = [c for c in attempt.ray if c.role == "worker" and c.group == group["groupName"]]
            policy = group["template"]["spec"].get("restartPolicy", "Always")
            failed = [
                c for c in mine if should_delete_pod(c.phase, c.exited_at is not None, policy)
            ]
            for c in failed:
                log(
                    f"attempt {attempt.number}: deleting worker pod {c.name}: {c.phase} "
                    f"({c.reason}; shouldDeletePod)"
                )
                self._delete_pods(attempt, [c], wait=False)
                attempt.failed_deleted.append(c.name)
                mine.remove(c)
            for c in [c for c in mine if c.name in to_delete]:
                log(
                    f"attempt {attempt.number}: deleting worker pod {c.name} (workersToDelete), "
                    f"{len(mine) - 1} left in group {c.group}"
                )
                self._delete_pods(attempt, [c], wait=False)  # the API returns at once
                attempt.deleted.append(c.name)
                mine.remove(c)
            for _ in range(workers_to_add(replicas, [c.name for c in mine], set())):
                self._ray_pod(attempt, group, head=False)
                self.workers_created += 1
            alive = sum(1 for c in attempt.ray if c.role == "worker")
            self.max_workers = max(self.max_workers, alive)

    def _schedule(self, attempt: Attempt) -> None:
        """The scheduler and kubelets: place pending pods, run init containers, then the pod's
        containers; the node autoscaler's ticks."""
        with self._lock:
            for name in self.released:
                self.nodes.release(name)
            self.released.clear()
        self.nodes.tick()
        for c in [*attempt.ray, *attempt.submitters]:
            if c.phase == "Pending":
                node, reason = self.nodes.place(c.name, c.spec)
                if node is None:
                    if reason != c.reason:
                        log(f"attempt {attempt.number}: pod {c.name} Pending: {reason}")
                        c.reason = reason
                    continue
                c.node = node.name
                log(f"attempt {attempt.number}: pod {c.name} scheduled on {node.name}")
                if c.init is not None:
                    self.podman.run(*c.init)
                    c.phase = "Initializing"
                else:
                    self._run(attempt, c)
            elif c.phase == "Initializing" and c.init is not None:
                status, code = self.podman.state(c.init[0])
                if status == "exited" and code == 0:
                    self._run(attempt, c)
                elif status == "exited":  # restartPolicy Always: the kubelet runs it again
                    log(f"init container {c.init[0]} exited with {code}; restarting it")
                    self.podman("start", c.init[0], check=False)
                elif status == "missing":
                    raise RuntimeError(f"init container {c.init[0]} is gone")

    def _run(self, attempt: Attempt, c: Container) -> None:
        self.podman.run(c.name, c.args, c.secret)
        c.phase, c.running_at = "Running", time.monotonic()
        if c.role == "head" and self.autoscaling and not attempt.autoscaler:
            self._autoscaler(attempt, c)

    def _delete_pods(self, attempt: Attempt, victims: list[Container], *, wait: bool) -> None:
        """A pod's deletion: its containers get SIGTERM, SIGKILL after the grace period; the
        node keeps the pod's requests until it is gone."""
        names = []
        for c in victims:
            names.append(c.name)
            if c.init is not None:
                names.append(c.init[0])
            if c.role == "head" and attempt.autoscaler:
                names.append(attempt.autoscaler)
            if c in attempt.ray:
                attempt.ray.remove(c)
        pod_names = [c.name for c in victims]

        def delete() -> None:
            self.podman.remove(names, grace_s=self.options.grace_s)
            self._remove_empty_dirs(pod_names)
            with self._lock:
                self.released.extend(pod_names)

        if wait:
            delete()
        else:
            thread = threading.Thread(target=delete, name=f"delete-{attempt.cluster}")
            thread.start()
            self.deleting.append(thread)

    def _head(self, attempt: Attempt) -> Container:
        return next(c for c in attempt.ray if c.role == "head")

    def _dashboard(self, attempt: Attempt, path: str) -> dict[str, Any] | None:
        """The operator's dashboard client: HTTP to the head's dashboard port, with the token;
        None for no answer (a 404 included)."""
        return self._ask(attempt, path)[1]

    def _ask(self, attempt: Attempt, path: str) -> tuple[JobInfo, Any]:
        """A dashboard request and what came of it: an answer, a 404 (the head answered that
        it has no such thing), or none at all."""
        if not attempt.head_ip:
            attempt.head_ip = self.podman(
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                self._head(attempt).name,
                check=False,
            )
        request = urllib.request.Request(f"http://{attempt.head_ip}:{pods.DASHBOARD_PORT}{path}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return JobInfo.FOUND, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return (JobInfo.NOT_FOUND if err.code == 404 else JobInfo.UNREACHABLE), None
        except (OSError, ValueError):
            attempt.head_ip = ""  # a restarted head may come back with another address
            return JobInfo.UNREACHABLE, None

    def _alive_nodes(self, attempt: Attempt) -> int | None:
        nodes = self._dashboard(attempt, "/nodes?view=summary")
        if not nodes:
            return None
        return sum(
            1
            for n in nodes.get("data", {}).get("summary", [])
            if n.get("raylet", {}).get("state") == "ALIVE"
        )

    def _ready(self, attempt: Attempt) -> bool:
        """The RayCluster is ready when every pod runs and the head sees every Ray node."""
        if any(c.phase != "Running" for c in attempt.ray):
            return False
        if any(self.podman.state(c.name)[0] != "running" for c in attempt.ray):
            return False
        alive = self._alive_nodes(attempt)
        return alive is not None and alive >= len(attempt.ray)

    def _watch_scale_up(self, attempt: Attempt) -> None:
        """Scale-up time: from the job's start to the first worker's Ray node alive."""
        if not self.autoscaling or self.scale_up_s is not None or attempt.running_at is None:
            return
        if not any(c.role == "worker" and c.phase == "Running" for c in attempt.ray):
            return
        alive = self._alive_nodes(attempt)
        if alive is not None and alive >= 2:  # the head and a worker
            self.scale_up_s = time.monotonic() - attempt.running_at
            log(
                f"attempt {attempt.number}: first worker's Ray node alive "
                f"{self.scale_up_s:.1f}s after the job started"
            )

    def _start_submitter(self, attempt: Attempt) -> None:
        template = self.spec.get("submitterPodTemplate", {})
        pod = copy.deepcopy(template.get("spec", {"containers": [{"name": "ray-job-submitter"}]}))
        container = pod["containers"][0]
        container.setdefault(
            "image",
            pods.ray_container(self.cluster_spec["headGroupSpec"]["template"]["spec"])["image"],
        )
        name = f"{self.name}-{suffix()}"
        env = {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
        env |= submitter.env(cluster=attempt.cluster, job_id=attempt.job_id, token=self.token)
        secret = {k: env.pop(k) for k in list(env) if k == "RAY_AUTH_TOKEN"}
        labels = {
            **template.get("metadata", {}).get("labels", {}),
            "ray.io/originated-from-cr-name": self.name,
            "ray.io/originated-from-crd": "RayJob",
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
        # K8sJobMode: KubeRay sets the command only where the user gave none (then the
        # user's own command and args run as given).
        command = [*container.get("command", []), *container.get("args", [])]
        if not container.get("command"):
            command = submitter.command(self.spec, cluster=attempt.cluster, job_id=attempt.job_id)
        args = [
            "--network",
            attempt.network,
            *self._security(pod, container),
            *self._limits(container),
            *[f for k, v in labels.items() for f in ("--label", f"{k}={v}")],
            *[f for k, v in env.items() for f in ("--env", f"{k}={v}")],
            *self._mounts(pod, name, container, None),
            "--entrypoint",
            command[0],
            self._image(container),
            *command[1:],
        ]
        attempt.submitters.append(
            Container(
                name,
                "submitter",
                spec=self.pod_specs.get("submitter", pod),
                args=args,
                secret=secret,
            )
        )
        self.submitter_pods += 1
        log(f"attempt {attempt.number}: submitter pod {name} (job id {attempt.job_id})")
        self._schedule(attempt)

    def _deadline_passed(self, attempt: Attempt) -> bool:
        deadline = self.spec.get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - attempt.started > float(deadline)

    def _pre_running_deadline_passed(self, attempt: Attempt) -> bool:
        deadline = self.spec.get("preRunningDeadlineSeconds")
        return deadline is not None and time.monotonic() - attempt.started > float(deadline)

    def _kubelet(self, attempt: Attempt) -> None:
        """restartPolicy Always: an exited Ray container starts again in place. A worker pod
        that is gone (deleted by someone else, its node reclaimed) is no longer listed: the
        next reconcile replaces it under a new name (reconcile.workers_to_add)."""
        now = time.monotonic()
        for c in list(attempt.ray):
            if c.phase != "Running":
                continue
            status, code = self.podman.state(c.name)
            if status == "missing" and c.role == "worker":
                log(f"attempt {attempt.number}: worker pod {c.name} is gone (not listed)")
                attempt.ray.remove(c)
                attempt.vanished.append(c.name)
                if c.init is not None:
                    self.podman.remove([c.init[0]], grace_s=0)
                self._remove_empty_dirs([c.name])
                with self._lock:
                    self.released.append(c.name)
                continue
            if status not in ("exited", "stopped"):
                continue
            if c.exited_at is None:
                c.exited_at = now
                log(
                    f"attempt {attempt.number}: {c.role} {c.name} exited with {code}; restarting "
                    f"in {self.options.restart_delay_s:g}s"
                )
            elif now - c.exited_at >= self.options.restart_delay_s:
                self.podman("start", c.name, check=False)
                c.restarts += 1
                self.ray_restarts += 1
                c.exited_at = None
                attempt.head_ip = ""
        if attempt.autoscaler and self.podman.state(attempt.autoscaler)[0] == "exited":
            log(f"attempt {attempt.number}: autoscaler sidecar exited; restarting it")
            self.podman("start", attempt.autoscaler, check=False)

    def _tick(self, attempt: Attempt) -> None:
        """One pass of the controllers: the RayCluster's pods, the scheduler, the kubelets."""
        self._reconcile_workers(attempt)  # replicas from the API's RayCluster, or the spec's
        if attempt.api is not None:
            for call in attempt.api.refused:
                line = call.line()
                if line not in self.refused:
                    self.refused.append(line)
                    log(f"kube-api: REFUSED a call the stand-in does not serve: {line}")
        self._schedule(attempt)
        self._kubelet(attempt)
        self._spot(attempt)

    def _reclaim_due(self, attempt: Attempt, now: float) -> str | None:
        """Why a reclaim is due now, while the Ray job runs: "event" (--reclaim-when's file
        exists, once) or "schedule" (the next of --reclaim-schedule's times has passed)."""
        if attempt.job_running_at is None:
            return None
        when = self.options.reclaim_when
        if when is not None and not self.reclaim_event_done and when.exists():
            return "event"
        if self.reclaims_due and now - attempt.job_running_at >= self.reclaims_due[0]:
            return "schedule"
        return None

    def _spot(self, attempt: Attempt) -> None:
        """The provider's side of a Spot pool (values: spot_reclaim). Once --reclaim-when's
        file exists while the job runs, one T4 node that holds a pod gets the notice: it is
        cordoned, the kubelet's graceful node shutdown SIGTERMs its pods' containers and
        SIGKILLs them after grace_s (the pod's terminationGracePeriodSeconds where the
        values say null), leaving the pods Failed for KubeRay to delete and replace; when
        notice_s is over the VM, and so the node, is gone."""
        now = time.monotonic()
        for r in self.reclaims:
            if r.gone_at is None and now - r.notice_at >= r.notice_s:
                node = next(n for n in self.nodes.nodes if n.name == r.node)
                self.nodes.remove(node)
                r.gone_at = now
                log(f"cloud: Spot node {r.node} is gone ({r.notice_s:g}s after the notice)")
        due = self._reclaim_due(attempt, now)
        if due is None:
            return
        node = self.nodes.reclaimable()
        if node is None:
            return  # no Spot node holds a pod yet: it is due again next tick
        if due == "event":
            self.reclaim_event_done = True
        else:
            self.reclaims_due.pop(0)
        victims = [
            c for c in attempt.ray if c.node == node.name and c.phase in ("Initializing", "Running")
        ]
        terms = self.options.values["spot_reclaim"]
        pod_grace = min(
            (float(c.spec.get("terminationGracePeriodSeconds", 30)) for c in victims), default=30
        )
        grace = min(
            float(terms["notice_s"]),
            pod_grace if terms["grace_s"] is None else float(terms["grace_s"]),
        )
        reclaim = Reclaim(node.name, self.nodes.reclaim(node), now, float(terms["notice_s"]), grace)
        self.reclaims.append(reclaim)
        log(
            f"cloud: Spot node {node.name} reclaimed: notice {reclaim.notice_s:g}s; node "
            f"cordoned; graceful node shutdown gives pods {', '.join(reclaim.pods)} {grace:g}s"
        )
        for c in victims:
            c.phase, c.reason = "Terminating", "node shutdown"
        names = [c.name for c in victims]
        inits = [c.init[0] for c in victims if c.init is not None]

        def shutdown() -> None:
            self.podman.stop([*names, *inits], grace)
            with self._lock:
                for c in victims:
                    c.phase, c.reason = "Failed", "Terminated: node shutdown"
            log(f"cloud: pods {', '.join(names)} Failed (Terminated) after the node shutdown")

        thread = threading.Thread(target=shutdown, name=f"reclaim-{node.name}")
        thread.start()
        self.deleting.append(thread)

    def _job_status(self, attempt: Attempt, submitter_finished: bool = False) -> str:
        """GetJobInfo and what the controller makes of its answer (reconcile.on_job_info): a
        404 before the submitter finished waits; after it, fails the RayJob; no answer starts
        the status-check clock (recordJobStatusCheckFailure)."""
        answer, info = self._ask(attempt, f"/api/jobs/{attempt.job_id}")
        decision = on_job_info(answer, submitter_finished)
        if answer is JobInfo.NOT_FOUND and not attempt.job_not_found:
            log(f"attempt {attempt.number}: GetJobInfo {attempt.job_id}: 404 (BadRequest)")
        attempt.job_not_found = answer is JobInfo.NOT_FOUND
        attempt.job_info_failure = decision.fail
        if decision.start_timer and attempt.status_failing_since is None:
            attempt.status_failing_since = time.monotonic()
        if decision.reset_timer:
            attempt.status_failing_since = None
        if not isinstance(info, dict):
            return attempt.job_status
        if info.get("status"):
            if info["status"] != attempt.job_status:
                message = info.get("message") or ""
                log(f"attempt {attempt.number}: jobStatus={info['status']} ({message})")
            attempt.job_status = info["status"]
            if attempt.job_status == "RUNNING" and attempt.job_running_at is None:
                attempt.job_running_at = time.monotonic()
        return attempt.job_status

    def _preempted(self, attempt: Attempt) -> bool:
        """Kueue's preemption, once per run, while the attempt's Ray job is RUNNING: Kueue
        evicts the workload and suspends the RayJob. When is the test's to say: a time since
        RUNNING (--preempt-after-s) or an event, a file the test creates (--preempt-when)."""
        after, when = self.options.preempt_after_s, self.options.preempt_when
        if (after is None and when is None) or self.suspensions or attempt.job_running_at is None:
            return False
        if after is not None and time.monotonic() - attempt.job_running_at < after:
            return False
        if when is not None and not when.exists():
            return False
        cause = f"after {after:g}s of" if when is None else f"on {when.name}, during"
        log(
            f"kueue: preempting the workload of LocalQueue {self.queue} {cause} "
            f"attempt {attempt.number}'s job RUNNING: spec.suspend=true"
        )
        self.spec["suspend"] = True
        return True

    def _linger(self, attempt: Attempt) -> None:
        """shutdownAfterJobFinishes with ttlSecondsAfterFinished: KubeRay deletes a finished
        job's cluster only once the TTL has passed, and until then Ray's autoscaler goes on
        removing idle workers: with the job over, every worker is idle. --linger-s plays that
        window (at most the TTL) and ends it as soon as no worker pod is left."""
        ttl = float(self.spec.get("ttlSecondsAfterFinished") or 0)
        limit = min(self.options.linger_s, ttl)
        if limit <= 0 or attempt.api is None:
            return
        log(f"attempt {attempt.number}: job finished; cluster kept up to {limit:g}s (TTL {ttl:g}s)")
        end = time.monotonic() + limit
        while True:
            self._tick(attempt)
            left = [c.name for c in attempt.ray if c.role == "worker"]
            if not left or time.monotonic() >= end:
                break
            time.sleep(POLL_S)
        log(f"attempt {attempt.number}: TTL window over, {len(left)} worker pods left: {left}")
        self.workers_left = len(left)

    def _suspending(self, attempt: Attempt, phase: str) -> Outcome:
        """updateStatusToSuspendingIfNeeded: spec.suspend moves an Initializing or Running
        RayJob to Suspending, ahead of every deadline check."""
        log(f"attempt {attempt.number}: {phase} -> Suspending (spec.suspend=true)")
        return Outcome("Suspending", attempt.job_status, "Suspended", "spec.suspend is true")

    def _admit(self) -> Outcome | None:
        """The Suspended case: nothing runs until spec.suspend is false, which only Kueue's
        admission sets here; then Suspended -> New (None: go on with a new attempt)."""
        if not self.queue:
            log("Suspended: spec.suspend is true and no queue label: nothing will unsuspend it")
            return Outcome(
                "Suspended",
                "",
                "Suspended",
                f"spec.suspend is true and nothing unsuspends it (no {kueue.QUEUE_LABEL} label)",
            )
        log(
            f"kueue: workload pending in LocalQueue {self.queue}; admitting it in "
            f"{self.options.admit_after_s:g}s"
        )
        time.sleep(self.options.admit_after_s)
        self.spec["suspend"] = False
        self.admissions += 1
        log(
            f"kueue: workload admitted (admission {self.admissions}): spec.suspend=false; "
            "KubeRay: Suspended -> New (a new job id and cluster name)"
        )
        return None

    def _status_checks_timed_out(self, attempt: Attempt) -> Outcome | None:
        """checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded: not retried."""
        since = attempt.status_failing_since
        if since is None or time.monotonic() - since < self.options.status_check_timeout_s:
            return None
        return Outcome(
            "Failed",
            attempt.job_status,
            "JobStatusCheckTimeoutExceeded",
            f"Job status checks have been failing for {time.monotonic() - since:.0f}s; exceeded "
            f"timeout of {self.options.status_check_timeout_s:g}s",
        )

    def _run_attempt(self, attempt: Attempt) -> Outcome:
        self._new_cluster(attempt)
        log(f"attempt {attempt.number}: Initializing (cluster {attempt.cluster})")
        while True:
            self._tick(attempt)
            if self.spec.get("suspend"):
                return self._suspending(attempt, "Initializing")
            if self._deadline_passed(attempt):  # checked first, as the controller does
                return self._deadline(attempt)
            if self._pre_running_deadline_passed(attempt):
                return self._pre_running_deadline(attempt)
            if self._ready(attempt):
                break
            time.sleep(POLL_S)
        attempt.running_at = time.monotonic()
        log(f"attempt {attempt.number}: Running failed={self.failed} succeeded={self.succeeded}")
        self._start_submitter(attempt)
        submitter_failures = 0
        while True:
            if self._preempted(attempt) or self.spec.get("suspend"):
                return self._suspending(attempt, "Running")
            if self._deadline_passed(attempt):
                return self._deadline(attempt)
            self._tick(attempt)
            self._watch_scale_up(attempt)
            current = attempt.submitters[-1]
            status, code = (
                self.podman.state(current.name) if current.phase == "Running" else ("pending", 0)
            )
            job_status = self._job_status(attempt)
            timed_out = self._status_checks_timed_out(attempt)
            if timed_out is not None:
                return timed_out
            if status == "exited" and code == 0:
                # The submitter Job completed: the Ray job's own status decides.
                for _ in range(15):  # the controller's 30 s grace for a terminal status
                    job_status = self._job_status(attempt, submitter_finished=True)
                    if attempt.job_info_failure is not None:  # 404 after the submitter
                        return Outcome("Failed", job_status, "AppFailed", attempt.job_info_failure)
                    if job_status in ("SUCCEEDED", "FAILED", "STOPPED"):
                        break
                    time.sleep(POLL_S)
                if job_status in ("SUCCEEDED", "STOPPED"):
                    return Outcome("Complete", job_status)
                if job_status == "FAILED":
                    return Outcome("Failed", job_status, "AppFailed", "Ray job FAILED")
                # checkSubmitterFinishedTimeoutAndUpdateStatusIfNeeded
                return Outcome(
                    "Failed",
                    "FAILED",
                    "JobDeploymentStatusTransitionGracePeriodExceeded",
                    "The RayJob submitter finished but the ray job did not reach terminal "
                    "state within 30s",
                )
            if status == "exited":
                submitter_failures += 1
                log(
                    f"attempt {attempt.number}: submitter {current.name} failed with {code} "
                    f"({submitter_failures} of {submitter.SUBMITTER_JOB_BACKOFF_LIMIT + 1})"
                )
                if submitter_failures > submitter.SUBMITTER_JOB_BACKOFF_LIMIT:
                    if job_status == "FAILED":
                        return Outcome("Failed", job_status, "AppFailed", "Ray job FAILED")
                    return Outcome(
                        "Failed",
                        job_status,
                        "SubmissionFailed",
                        "Job submission has failed. Reason: BackoffLimitExceeded",
                    )
                time.sleep(self.options.restart_delay_s)  # the Job controller's back-off
                self.nodes.release(current.name)
                self._start_submitter(attempt)
            time.sleep(POLL_S)

    def _deadline(self, attempt: Attempt) -> Outcome:
        deadline = self.spec.get("activeDeadlineSeconds")
        return Outcome(
            "Failed",
            attempt.job_status,
            "DeadlineExceeded",
            f"The RayJob has passed the activeDeadlineSeconds. StartTime: {attempt.start_time}. "
            f"ActiveDeadlineSeconds: {deadline}",
        )

    def _pre_running_deadline(self, attempt: Attempt) -> Outcome:
        deadline = self.spec.get("preRunningDeadlineSeconds")
        pending = [f"{c.name}: {c.reason}" for c in attempt.ray if c.phase == "Pending"]
        log(f"attempt {attempt.number}: not Running after {deadline}s; pending pods: {pending}")
        return Outcome(
            "Failed",
            attempt.job_status,
            "PreRunningDeadlineExceeded",
            f"The RayJob has passed the preRunningDeadlineSeconds. StartTime: "
            f"{attempt.start_time}. PreRunningDeadlineSeconds: {deadline}",
        )

    def _end_attempt(self, attempt: Attempt, keep_logs: bool, retrying: bool) -> None:
        """The attempt's cluster and submitter are deleted. After a failure KubeRay deletes
        them in the background while the next attempt starts, so the two overlap for up to
        the pods' grace period; after the last attempt the run waits for them."""
        names = [c.name for c in attempt.ray + attempt.submitters]
        names += [c.init[0] for c in attempt.ray if c.init is not None]
        if attempt.autoscaler:
            names.append(attempt.autoscaler)
        if keep_logs:
            for name in names:
                self.podman.save_logs(name, self.work / "logs" / f"attempt-{attempt.number}")
        if attempt.api is not None:
            log(attempt.api.summary())
            attempt.api.stop()
        pods_to_delete = list(attempt.ray)
        network = attempt.network
        submitters = [c.name for c in attempt.submitters]
        # The last attempt's pods are removed after the outcome is known, with a short grace:
        # the RayJob is over, and bash as PID 1 would make every container wait it out.
        grace_s = self.options.grace_s if retrying else 5

        def delete() -> None:
            names = [c.name for c in pods_to_delete]
            names += [c.init[0] for c in pods_to_delete if c.init is not None]
            names += [attempt.autoscaler] if attempt.autoscaler else []
            self.podman.remove(submitters + names, grace_s=grace_s)
            self._remove_empty_dirs(submitters + [c.name for c in pods_to_delete])
            self.podman.remove_network(network)
            with self._lock:
                self.released.extend(submitters + [c.name for c in pods_to_delete])

        if retrying:
            thread = threading.Thread(target=delete, name=f"delete-{attempt.cluster}")
            thread.start()
            self.deleting.append(thread)
            log(
                f"attempt {attempt.number}: deleting cluster {attempt.cluster} in the background "
                f"(grace {self.options.grace_s}s) while the next attempt starts"
            )
        else:
            delete()

    def run(self) -> tuple[Outcome, float]:
        start = time.monotonic()
        if self.queue:
            refused = kueue.webhook_errors(self.doc, elastic_gate=self.options.kueue_elastic_gate)
            if refused:
                log(f"kueue: the webhook refuses to create the RayJob: {'; '.join(refused)}")
                return Outcome("Rejected", "", "AdmissionWebhookDenied", "; ".join(refused)), 0.0
            kueue.default(self.doc)
            log(
                f"kueue: LocalQueue {self.queue}: the webhook creates the RayJob with "
                "spec.suspend=true; KubeRay: New -> Initializing -> Suspending -> Suspended "
                "(no cluster yet)"
            )
        error = validate_rayjob(self.doc)
        if error:
            log(f"ValidationFailed: {error}")
            return Outcome("ValidationFailed", "", "ValidationFailed", error), 0.0
        prepare_volume(self.volume)
        backoff = int(self.spec.get("backoffLimit", 0))
        try:
            while True:
                if self.spec.get("suspend"):
                    stuck = self._admit()
                    if stuck is not None:
                        return stuck, time.monotonic() - start
                cluster = f"{self.name}-{suffix()}"
                attempt = Attempt(
                    len(self.attempts) + 1,
                    cluster,
                    self.spec.get("jobId") or f"{self.name}-{suffix()}",
                    cluster,
                )
                self.attempts.append(attempt)
                try:
                    outcome = self._run_attempt(attempt)
                except RuntimeError as err:  # podman itself failed: not KubeRay's to copy
                    log(f"attempt {attempt.number}: the runner failed: {err}")
                    outcome = Outcome("Failed", attempt.job_status, "RunnerError", str(err)[-500:])
                if outcome.deployment == "Suspending":
                    # deleteClusterResources, deleteSubmitterJob, then the job id, cluster
                    # name and status are cleared: Suspended, neither failed nor succeeded.
                    self.suspensions += 1
                    self._end_attempt(attempt, keep_logs=True, retrying=True)
                    log(
                        f"attempt {attempt.number}: Suspended (cluster {attempt.cluster} and "
                        f"its submitter deleted; job id {attempt.job_id} cleared) "
                        f"suspensions={self.suspensions} failed={self.failed} "
                        f"succeeded={self.succeeded}"
                    )
                    continue
                if outcome.deployment == "Complete":
                    self.succeeded += 1
                    self._linger(attempt)
                else:
                    self.failed += 1
                retry = (
                    outcome.deployment == "Failed"
                    and outcome.reason
                    not in ("DeadlineExceeded", "JobStatusCheckTimeoutExceeded", "RunnerError")
                    and self.failed < backoff + 1
                )
                self._end_attempt(
                    attempt,
                    keep_logs=outcome.deployment != "Complete" or self.options.keep_logs,
                    retrying=retry,
                )
                log(
                    f"attempt {attempt.number}: {'Retrying' if retry else outcome.deployment} "
                    f"jobStatus={outcome.job_status or 'none'} failed={self.failed} "
                    f"succeeded={self.succeeded} {outcome.reason} {outcome.message}".rstrip()
                )
                if not retry:
                    return outcome, time.monotonic() - start
        finally:
            for thread in self.deleting:
                thread.join()

    def stop_apis(self) -> None:
        for attempt in self.attempts:
            if attempt.api is not None:
                attempt.api.stop()


def values_for(manifest: Path) -> Path:
    """The values file of the variant a rendered manifest belongs to (jobs/kube/render.py's
    folders): k8s/<variant>/x.yaml is <variant>'s, k8s/x.yaml the default variant's."""
    values = REPO / "k8s" / "values"
    folder = manifest.resolve().parent
    if (values / f"{folder.name}.yaml").is_file():
        return values / f"{folder.name}.yaml"
    for path in sorted(values.glob("*.yaml")):
        if (yaml.safe_load(path.read_text()) or {}).get("default"):
            return path
    return values / "missing.yaml"


def prepare_volume(path: Path, fs_group: int = FS_GROUP_DEFAULT) -> None:
    """The claim as a host folder, owned the way fsGroup leaves a volume: group-owned by
    the fsGroup, group-writable, setgid so new files keep the group."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chown(path, -1, fs_group)
    path.chmod(0o2775)


@contextlib.contextmanager
def interrupts_unwind() -> Iterator[None]:
    """SIGTERM/SIGINT raise, so that `finally` removes what this run created."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.podman_rayjob",
        description="Run a RayJob manifest as KubeRay would, in podman containers of its image.",
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument(
        "--volume", type=Path, help="host folder for the claim (default: WORK/volume)"
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="folder for the volume and kept logs (default: a new one under /tmp)",
    )
    parser.add_argument(
        "--run-id",
        default=None,
        help=f"value of the {RUN_LABEL} label on everything this run creates",
    )
    parser.add_argument(
        "--values",
        type=Path,
        help="the variant's values file, whose `nodes` the pods are scheduled on (default: "
        "from the manifest's folder: k8s/<variant>/ or the default variant's k8s/)",
    )
    parser.add_argument(
        "--image", help="a local image to run in place of any image that is not present"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting added to the RayJob's runtimeEnvYAML env_vars, as a user would",
    )
    parser.add_argument(
        "--idle-timeout-s", type=int, help="replace autoscalerOptions.idleTimeoutSeconds"
    )
    parser.add_argument(
        "--node-boot-s",
        type=float,
        help="how long a new node takes to be Ready (default: the values file's "
        "nodes.t4.boot_s where set, else 5)",
    )
    parser.add_argument(
        "--node-idle-s", type=float, default=10.0, help="how long an empty GPU node is kept"
    )
    parser.add_argument(
        "--stockout-s",
        type=float,
        default=0.0,
        help="the GPU pool adds no node for this many seconds from the start, as in a zone "
        "out of T4s (a stockout); inf: never (default 0)",
    )
    parser.add_argument(
        "--grace-s",
        type=int,
        default=GRACE_S,
        help="terminationGracePeriodSeconds of a deleted cluster's pods: SIGTERM, then SIGKILL "
        f"(default {GRACE_S}, Kubernetes'; a test that does not prove it may shorten it)",
    )
    parser.add_argument(
        "--restart-delay-s",
        type=float,
        default=RESTART_DELAY_S,
        help="the kubelet's back-off before restarting an exited container, and the Job "
        f"controller's before a new submitter pod (default {RESTART_DELAY_S:g})",
    )
    parser.add_argument(
        "--status-check-timeout-s",
        type=float,
        default=STATUS_CHECK_TIMEOUT_S,
        help="KubeRay's RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS",
    )
    parser.add_argument(
        "--admit-after-s",
        type=float,
        default=3.0,
        help="Kueue: how long a queued RayJob waits for admission (default 3)",
    )
    parser.add_argument(
        "--preempt-after-s",
        type=float,
        help="Kueue: preempt (suspend) the RayJob once, this long after its Ray job turned "
        "RUNNING, then admit it again (needs the kueue.x-k8s.io/queue-name label)",
    )
    parser.add_argument(
        "--preempt-when",
        type=Path,
        metavar="FILE",
        help="Kueue: preempt (suspend) the RayJob once, when FILE exists while its Ray job "
        "is RUNNING (a test creates it on the event it waits for)",
    )
    parser.add_argument(
        "--reclaim-when",
        type=Path,
        metavar="FILE",
        help="Spot: the provider reclaims one T4 node that holds a pod, once, when FILE "
        "exists while the Ray job runs (a test creates it on the event it waited for); the "
        "values file's spot_reclaim gives the notice and grace (needs spot: true)",
    )
    parser.add_argument(
        "--reclaim-schedule",
        metavar="SEED:MEAN_S:COUNT",
        help="Spot: reclaim a T4 node that holds a pod COUNT times, at seeded times from the "
        "Ray job's start, the gaps exponential with mean MEAN_S (nodes.reclaim_schedule; "
        "the same seed, the same times); needs spot: true",
    )
    parser.add_argument(
        "--linger-s",
        type=float,
        default=0.0,
        help="keep a finished job's cluster up to this long (at most ttlSecondsAfterFinished, "
        "as KubeRay does) while the autoscaler removes idle workers; ends once none is left",
    )
    parser.add_argument(
        "--kueue-elastic-gate",
        action="store_true",
        help="Kueue's ElasticJobsViaWorkloadSlices gate is on (an elastic-job annotated "
        "RayJob may then autoscale)",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep every attempt's container logs under WORK/logs (default: failed and "
        "suspended attempts only)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the plan, start nothing"
    )
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        print(f"error: no such manifest: {args.manifest}", file=sys.stderr)
        return 2
    try:
        found = [d for d in yaml.safe_load_all(args.manifest.read_text()) if d]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: {args.manifest} is not YAML: {first}", file=sys.stderr)
        return 2
    if len(found) != 1 or not isinstance(found[0], dict) or found[0].get("kind") != "RayJob":
        print(f"error: {args.manifest} must hold exactly one RayJob", file=sys.stderr)
        return 2
    bad = [e for e in args.env if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        print(f"error: --env takes KEY=VALUE, got {bad[0]!r}", file=sys.stderr)
        return 2
    preempting = args.preempt_after_s is not None or args.preempt_when is not None
    if preempting and not kueue.queue_name(found[0]):
        print(
            "error: --preempt-after-s/--preempt-when play Kueue: the RayJob needs the "
            f"{kueue.QUEUE_LABEL} label (make manifests QUEUE=<local queue>)",
            file=sys.stderr,
        )
        return 2
    values_path = args.values or values_for(args.manifest)
    if not values_path.is_file():
        print(f"error: no values file {values_path}: name one with --values", file=sys.stderr)
        return 2
    values = yaml.safe_load(values_path.read_text())
    reclaiming = args.reclaim_when is not None or args.reclaim_schedule is not None
    if reclaiming and not (values.get("spot") and values.get("spot_reclaim")):
        print(
            f"error: --reclaim-when and --reclaim-schedule need a Spot pool: {values_path} "
            "must say spot: true and give spot_reclaim",
            file=sys.stderr,
        )
        return 2
    reclaim_at: list[float] = []
    if args.reclaim_schedule is not None:
        try:
            seed, mean_s, count = args.reclaim_schedule.split(":")
            reclaim_at = reclaim_schedule(int(seed), float(mean_s), int(count))
        except ValueError as err:
            print(f"error: --reclaim-schedule {args.reclaim_schedule}: {err}", file=sys.stderr)
            return 2
    if args.dry_run:  # validate only: nothing is created
        refused = kueue.webhook_errors(found[0], elastic_gate=args.kueue_elastic_gate)
        error = "; ".join(refused) if refused else validate_rayjob(kueue.defaulted(found[0]))
        print(json.dumps({"manifest": str(args.manifest), "valid": error is None, "error": error}))
        return 0 if error is None else 1
    if shutil.which("podman") is None:
        print("error: podman is not installed (apt-get install podman runc)", file=sys.stderr)
        return 2
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"rtk-e2e-{suffix()}"
    work.mkdir(parents=True, exist_ok=True)
    volume = args.volume or work / "volume"
    run_id = args.run_id or work.name
    options = Options(
        values=values,
        image=args.image,
        env=dict(e.split("=", 1) for e in args.env),
        idle_timeout_s=args.idle_timeout_s,
        node_boot_s=boot_seconds(args.node_boot_s, values),
        node_idle_s=args.node_idle_s,
        stockout_s=args.stockout_s,
        status_check_timeout_s=args.status_check_timeout_s,
        grace_s=args.grace_s,
        restart_delay_s=args.restart_delay_s,
        admit_after_s=args.admit_after_s,
        preempt_after_s=args.preempt_after_s,
        preempt_when=args.preempt_when,
        reclaim_when=args.reclaim_when,
        reclaim_at=tuple(reclaim_at),
        linger_s=args.linger_s,
        kueue_elastic_gate=args.kueue_elastic_gate,
        keep_logs=args.keep_logs,
    )
    job = RayJobRun(args.manifest, volume, work, run_id, options)
    image = pods.ray_container(job.cluster_spec["headGroupSpec"]["template"]["spec"])["image"]
    outcome, seconds = Outcome("Failed", "", "Interrupted"), 0.0
    start = time.monotonic()
    try:
        with interrupts_unwind():
            outcome, seconds = job.run()
    except KeyboardInterrupt as stop:
        outcome = Outcome("Failed", "", "Interrupted", str(stop))
        for attempt in job.attempts:  # the containers of the attempt that was running
            for c in attempt.ray + attempt.submitters:
                if c.name in job.podman.containers:
                    job.podman.save_logs(c.name, work / "logs" / f"attempt-{attempt.number}")
    finally:
        # A second Ctrl-C must not leave containers behind: cleanup runs to its end.
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}
        job.stop_apis()
        job.podman.cleanup()
        for sig, old in previous.items():
            signal.signal(sig, old)
    seconds = seconds or time.monotonic() - start
    status = outcome.job_status or (
        "ValidationFailed" if outcome.deployment == "ValidationFailed" else "FAILED"
    )
    print(
        json.dumps(
            {
                "status": status,
                "jobDeploymentStatus": outcome.deployment,
                "reason": outcome.reason,
                "message": outcome.message,
                "attempts": len(job.attempts),
                "queue": job.queue,
                "admissions": job.admissions,
                "suspensions": job.suspensions,
                "failed": job.failed,
                "succeeded": job.succeeded,
                "submitter_pods": job.submitter_pods,
                "ray_container_restarts": job.ray_restarts,
                "image": image,
                "volume": str(volume),
                "logs": str(work / "logs") if (work / "logs").exists() else None,
                "seconds": round(seconds, 1),
                "values": str(values_path),
                "workers_created": job.workers_created,
                "workers_deleted": sum(len(a.deleted) for a in job.attempts),
                "workers_gone": [name for a in job.attempts for name in a.vanished],
                "workers_failed_deleted": [n for a in job.attempts for n in a.failed_deleted],
                "reclaims": [
                    {
                        "node": r.node,
                        "pods": r.pods,
                        "notice_at_s": round(r.notice_at - job.started, 1),
                        "notice_s": r.notice_s,
                        "grace_s": r.grace_s,
                        "gone_at_s": r.gone_at and round(r.gone_at - job.started, 1),
                    }
                    for r in job.reclaims
                ],
                "workers_left": job.workers_left,
                "max_workers": job.max_workers,
                "nodes_added": job.nodes.added,
                "nodes_removed": job.nodes.removed,
                "scale_ups_refused": job.nodes.refused,
                "scale_up_s": None if job.scale_up_s is None else round(job.scale_up_s, 1),
                "refused_api_calls": job.refused,
            }
        ),
        flush=True,
    )
    return 0 if outcome.deployment == "Complete" and status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
