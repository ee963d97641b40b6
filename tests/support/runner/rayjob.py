"""Run a RayJob manifest the way KubeRay v1.7.0, the kube-scheduler, a node autoscaler and
the kubelets would, in podman containers.

    python -m tests.support.runner k8s/kind/rayjob-tune.yaml     # make e2e-podman STAGE=tune
    python -m tests.support.runner k8s/rayjob-asha.yaml --image IMAGE --env TRAIN_LIMIT=2048
                                                  # the default cloud variant, autoscaling from zero

Any variant's manifest runs (k8s/rayjob-<stage>.yaml, k8s/<variant>/...): its values file
(k8s/values/<variant>.yaml, found from the manifest's folder or --values) declares the nodes
(tests/support/runner/nodes.py): every pod waits Pending, with the scheduler's reason,
until a node it fits and selects and tolerates is Ready; a GPU pool adds a node for a
pending pod (Ready after --node-boot-s) up to its max_nodes and removes one left empty for
--node-idle-s.
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
  /tmp/ray) in the head's network namespace, against tests/support/runner/api.py: a stand-in
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

import contextlib
import copy
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support import kueue
from tests.support.kuberay import pods, submitter
from tests.support.kuberay.reconcile import (
    should_delete_pod,
    workers_to_add,
)
from tests.support.kuberay.validation import validate_rayjob
from tests.support.runner.autoscaler import AutoscalerSidecar
from tests.support.runner.kubelet import Kubelet
from tests.support.runner.nodes import Cluster as Nodes
from tests.support.runner.podman import (
    FS_GROUP_DEFAULT,
    POLL_S,
    Podman,
    log,
    prepare_volume,
    suffix,
)
from tests.support.runner.queueing import KueueAdmission
from tests.support.runner.spot import SpotProvider
from tests.support.runner.state import (
    Attempt,
    Container,
    Options,
    Outcome,
    Reclaim,
    with_options,
)
from tests.support.runner.status import JobStatus


class RayJobRun(Kubelet, AutoscalerSidecar, JobStatus, SpotProvider, KueueAdmission):
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

    def _head(self, attempt: Attempt) -> Container:
        return next(c for c in attempt.ray if c.role == "head")

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
