"""Run a RayJob manifest the way KubeRay v1.7.0 and a kubelet would, in podman containers.

    python -m tests.e2e.podman_rayjob k8s/kind/rayjob-tune.yaml     # make e2e-podman STAGE=tune

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
- a Ray container that exits is restarted in place after 10 s (restartPolicy Always);
- activeDeadlineSeconds counts per attempt and ends the RayJob (DeadlineExceeded is not
  retried); any other failure deletes the attempt's containers and starts a new cluster on
  the same volume while `backoffLimit` allows (rayjob_controller.go).
The last line printed is one JSON object: status, attempts, image, volume, seconds, ...

Only Ray's own `ray start` / `ray job` commands run in the containers. Not reproduced: the
API server and scheduling (node selectors, taints, GPUs: a fake GPU stays a Ray resource),
probes beyond readiness at start, the autoscaler, Services' load balancing, and the TTL
(containers are removed when the run ends; logs of a failed run are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.kuberay import pods, submitter
from tests.support.kuberay.validation import validate_rayjob

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "tests" / "e2e" / "containers.conf"
STORAGE_CLAIM_MOUNT = "/mnt/cluster_storage"
FS_GROUP_DEFAULT = 100
RESTART_DELAY_S = 10.0  # the kubelet's first crash-loop back-off
POLL_S = 2.0
RUN_LABEL = "io.ray-tune-k8s.e2e-run"
# rand.String's alphabet in k8s.io/apimachinery (GenerateRayClusterName, GenerateRayJobId).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def log(message: str) -> None:
    print(f"[kuberay] {message}", flush=True)


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

    def remove(self, names: list[str]) -> None:
        for name in names:
            self("rm", "-f", "-t", "5", name, check=False)
            if name in self.containers:
                self.containers.remove(name)

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
    name: str
    role: str  # head | worker | submitter
    restarts: int = 0
    exited_at: float | None = None


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


@dataclass
class Outcome:
    deployment: str  # Complete | Failed | ValidationFailed
    job_status: str
    reason: str = ""
    message: str = ""


class RayJobRun:
    _pending_starts: list[tuple[str, list[str], dict[str, str], str | None]]

    def __init__(self, manifest: Path, volume: Path, work: Path, run_id: str) -> None:
        (self.doc,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        self.manifest = manifest
        self.name: str = self.doc["metadata"]["name"]
        self.spec: dict[str, Any] = self.doc["spec"]
        self.cluster_spec: dict[str, Any] = self.spec.get("rayClusterSpec", {})
        self.volume = volume
        self.work = work
        self.podman = Podman(run_id)
        auth = self.cluster_spec.get("authOptions", {}).get("mode", "disabled") == "token"
        self.token = secrets.token_urlsafe(32) if auth else None
        self.failed = self.succeeded = 0
        self.attempts: list[Attempt] = []
        self.submitter_pods = 0
        self.ray_restarts = 0

    # --- pods --------------------------------------------------------------------------

    def _image(self, container: dict[str, Any]) -> str:
        """imagePullPolicy IfNotPresent on a node that cannot pull: the image must be here."""
        image = container["image"]
        exists = subprocess.run(["podman", "image", "exists", image], env=self.podman.env)
        if exists.returncode != 0:
            raise SystemExit(
                f"error: image {image} is not present and nothing can be pulled here: "
                "build it with `make image-offline` (or `make image-cpu` where images can be "
                "pulled)"
            )
        return image

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
            flags += ["--cpus", f"{pods.quantity(limits['cpu']):g}"]
        if "memory" in limits:
            flags += ["--memory", str(pods.value(limits["memory"]))]
        return flags

    def _mounts(
        self, pod: dict[str, Any], container: dict[str, Any], shm: pods.Shm | None
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
            elif "emptyDir" in volume:
                # An emptyDir: writable by the pod's fsGroup, like the kubelet makes it.
                flags += ["--mount", f"type=tmpfs,destination={path},tmpfs-mode=1777"]
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

    def _ray_pod(
        self, attempt: Attempt, group: dict[str, Any], *, head: bool, index: int = 0
    ) -> None:
        pod = group["template"]["spec"]
        container = pods.ray_container(pod)
        fqdn = pods.head_fqdn(attempt.cluster)
        head_group = self.cluster_spec["headGroupSpec"]
        port = pods.head_port(head_group)
        autoscaling = bool(self.cluster_spec.get("enableInTreeAutoscaling"))
        params = pods.start_params(group, head=head, fqdn=fqdn, port=port, autoscaling=autoscaling)
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
        if not head:
            # wait-gcs-ready polls the head's GCS through its Service: a copy of the Ray
            # container's user env and mounts, plus FQ_RAY_IP/RAY_IP and the auth variables,
            # with its own 200m/256Mi (DefaultWorkerPodTemplate, setInitContainerEnvVars).
            init_env = user_env | {"FQ_RAY_IP": fqdn, "RAY_IP": fqdn.split(".")[0]}
            if self.token is not None:
                init_env["RAY_AUTH_MODE"] = "token"
            self.podman.run(
                f"{name}-init",
                [
                    *common,
                    *self._limits({"resources": {"limits": pods.INIT_RESOURCES}}),
                    *[f for k, v in init_env.items() for f in ("--env", f"{k}={v}")],
                    *self._mounts(pod, container, None),
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
            *self._mounts(pod, container, pods.dev_shm(pod, params)),
        ]
        if head:
            args += ["--network-alias", pods.head_service(attempt.cluster), "--network-alias", fqdn]
        args += ["--entrypoint", "/bin/bash", image, *pods.container_args(command)[1:]]
        role = "head" if head else "worker"
        attempt.ray.append(Container(name, role))
        self._pending_starts.append((name, args, secret, None if head else f"{name}-init"))
        root = "read-only root" if "--read-only" in args else "writable root"
        log(f"attempt {attempt.number}: {role} pod {name} ({root}): {command.strip()}")

    def _start_cluster(self, attempt: Attempt) -> None:
        self._pending_starts = []
        self.podman.network(attempt.network)
        self._ray_pod(attempt, self.cluster_spec["headGroupSpec"], head=True)
        for group in self.cluster_spec.get("workerGroupSpecs", []):
            for i in range(int(group.get("replicas", group.get("minReplicas", 0)))):
                self._ray_pod(attempt, group, head=False, index=i)
        waiting = []
        for pending in self._pending_starts:
            name, args, secret, init = pending
            if init is None:
                self.podman.run(name, args, secret)
            else:
                waiting.append(pending)
        # A worker's Ray container starts once its init container has seen the GCS.
        while waiting and not self._deadline_passed(attempt):
            self._kubelet(attempt, started_only=True)  # a head that dies meanwhile comes back
            for pending in list(waiting):
                name, args, secret, init = pending
                status, code = self.podman.state(init)
                if status == "missing":
                    raise RuntimeError(f"init container {init} is gone")
                if status == "exited":
                    if code != 0:  # restartPolicy Always: the kubelet runs it again
                        log(f"init container {init} exited with {code}; restarting it")
                        self.podman("start", init, check=False)
                        continue
                    self.podman.run(name, args, secret)
                    waiting.remove(pending)
            time.sleep(POLL_S)

    def _head(self, attempt: Attempt) -> Container:
        return next(c for c in attempt.ray if c.role == "head")

    def _dashboard(self, attempt: Attempt, path: str) -> dict[str, Any] | None:
        """The operator's dashboard client: HTTP to the head's dashboard port, with the token."""
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
                return json.loads(response.read() or b"null")
        except (OSError, ValueError):
            attempt.head_ip = ""  # a restarted head may come back with another address
            return None

    def _ready(self, attempt: Attempt) -> bool:
        """The cluster is ready when every Ray container runs and the head sees every node."""
        if any(self.podman.state(c.name)[0] != "running" for c in attempt.ray):
            return False
        nodes = self._dashboard(attempt, "/nodes?view=summary")
        if not nodes:
            return False
        alive = [
            n
            for n in nodes.get("data", {}).get("summary", [])
            if n.get("raylet", {}).get("state") == "ALIVE"
        ]
        return len(alive) >= len(attempt.ray)

    def _start_submitter(self, attempt: Attempt) -> None:
        template = self.spec.get("submitterPodTemplate", {})
        pod = template.get("spec", {"containers": [{"name": "ray-job-submitter"}]})
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
            *self._mounts(pod, container, None),
            "--entrypoint",
            command[0],
            self._image(container),
            *command[1:],
        ]
        self.podman.run(name, args, secret)
        attempt.submitters.append(Container(name, "submitter"))
        self.submitter_pods += 1
        log(f"attempt {attempt.number}: submitter pod {name} (job id {attempt.job_id})")

    def _deadline_passed(self, attempt: Attempt) -> bool:
        deadline = self.spec.get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - attempt.started > float(deadline)

    def _kubelet(self, attempt: Attempt, started_only: bool = False) -> None:
        """restartPolicy Always: an exited Ray container starts again in place."""
        now = time.monotonic()
        for c in attempt.ray:
            if started_only and c.name not in self.podman.containers:
                continue
            status, code = self.podman.state(c.name)
            if status not in ("exited", "stopped"):
                continue
            if c.exited_at is None:
                c.exited_at = now
                log(
                    f"attempt {attempt.number}: {c.role} {c.name} exited with {code}; restarting "
                    f"in {RESTART_DELAY_S:g}s"
                )
            elif now - c.exited_at >= RESTART_DELAY_S:
                self.podman("start", c.name, check=False)
                c.restarts += 1
                self.ray_restarts += 1
                c.exited_at = None
                attempt.head_ip = ""

    def _job_status(self, attempt: Attempt) -> str:
        info = self._dashboard(attempt, f"/api/jobs/{attempt.job_id}")
        if info and info.get("status"):
            if info["status"] != attempt.job_status:
                message = info.get("message") or ""
                log(f"attempt {attempt.number}: jobStatus={info['status']} ({message})")
            attempt.job_status = info["status"]
        return attempt.job_status

    def _run_attempt(self, attempt: Attempt) -> Outcome:
        self._start_cluster(attempt)
        log(f"attempt {attempt.number}: Initializing (cluster {attempt.cluster})")
        while not self._ready(attempt):
            if self._deadline_passed(attempt):
                return self._deadline(attempt)
            self._kubelet(attempt)
            time.sleep(POLL_S)
        log(f"attempt {attempt.number}: Running failed={self.failed} succeeded={self.succeeded}")
        self._start_submitter(attempt)
        submitter_failures = 0
        while True:
            if self._deadline_passed(attempt):
                return self._deadline(attempt)
            self._kubelet(attempt)
            current = attempt.submitters[-1]
            status, code = self.podman.state(current.name)
            job_status = self._job_status(attempt)
            if status == "exited" and code == 0:
                # The submitter Job completed: the Ray job's own status decides.
                for _ in range(15):  # the controller's 30 s grace for a terminal status
                    if job_status in ("SUCCEEDED", "FAILED", "STOPPED"):
                        break
                    time.sleep(POLL_S)
                    job_status = self._job_status(attempt)
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
                time.sleep(RESTART_DELAY_S)  # the Job controller's back-off
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

    def _end_attempt(self, attempt: Attempt, keep_logs: bool) -> None:
        names = [c.name for c in attempt.ray + attempt.submitters]
        names += [f"{c.name}-init" for c in attempt.ray if c.role == "worker"]
        if keep_logs:
            for name in names:
                self.podman.save_logs(name, self.work / "logs" / f"attempt-{attempt.number}")
        self.podman.remove(names)
        self.podman.remove_network(attempt.network)

    def run(self) -> tuple[Outcome, float]:
        start = time.monotonic()
        error = validate_rayjob(self.doc)
        if error:
            log(f"ValidationFailed: {error}")
            return Outcome("ValidationFailed", "", "ValidationFailed", error), 0.0
        prepare_volume(self.volume)
        backoff = int(self.spec.get("backoffLimit", 0))
        while True:
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
            except RuntimeError as err:  # podman itself failed: not KubeRay's behaviour to copy
                log(f"attempt {attempt.number}: the runner failed: {err}")
                outcome = Outcome("Failed", attempt.job_status, "RunnerError", str(err)[-500:])
            if outcome.deployment == "Complete":
                self.succeeded += 1
            else:
                self.failed += 1
            retry = (
                outcome.deployment == "Failed"
                and outcome.reason
                not in ("DeadlineExceeded", "JobStatusCheckTimeoutExceeded", "RunnerError")
                and self.failed < backoff + 1
            )
            self._end_attempt(attempt, keep_logs=outcome.deployment != "Complete")
            log(
                f"attempt {attempt.number}: {'Retrying' if retry else outcome.deployment} "
                f"jobStatus={outcome.job_status or 'none'} failed={self.failed} "
                f"succeeded={self.succeeded} {outcome.reason} {outcome.message}".rstrip()
            )
            if not retry:
                return outcome, time.monotonic() - start


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
    if args.dry_run:  # validate only: nothing is created
        error = validate_rayjob(found[0])
        print(json.dumps({"manifest": str(args.manifest), "valid": error is None, "error": error}))
        return 0 if error is None else 1
    if shutil.which("podman") is None:
        print("error: podman is not installed (apt-get install podman runc)", file=sys.stderr)
        return 2
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"rtk-e2e-{suffix()}"
    work.mkdir(parents=True, exist_ok=True)
    volume = args.volume or work / "volume"
    run_id = args.run_id or work.name
    job = RayJobRun(args.manifest, volume, work, run_id)
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
                "failed": job.failed,
                "succeeded": job.succeeded,
                "submitter_pods": job.submitter_pods,
                "ray_container_restarts": job.ray_restarts,
                "image": image,
                "volume": str(volume),
                "logs": str(work / "logs") if (work / "logs").exists() else None,
                "seconds": round(seconds, 1),
            }
        ),
        flush=True,
    )
    return 0 if outcome.deployment == "Complete" and status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
