"""Run a RayJob manifest for real on this machine, as KubeRay would on Kubernetes.

KubeRay's part of a RayJob is mechanical: build a Ray cluster from `rayClusterSpec`, submit
`entrypoint` with `runtimeEnvYAML` through the Ray Jobs API, watch it to a terminal status
within `activeDeadlineSeconds`, and after a failure build a new cluster and submit again,
up to `backoffLimit` times. This harness does the same with real Ray processes: one
`ray start` node per head and worker replica (jobs/localcluster.py), with the CPUs, GPUs,
memory and custom resources the manifest gives each, token authentication on, and every
volume mount mapped to a folder of the caller's. It prints each mapping it makes.

    python -m tests.harness k8s/kind/rayjob-tune.yaml      # make e2e-local STAGE=tune

What it does not reproduce: pod scheduling and node selectors, image pulls (the code and
data come from this checkout), Kubernetes-side retries of the submitter pod, Services and
port-forwarding, and separate network namespaces (all nodes share this host's IP).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.localcluster import LocalCluster, NodeSpec

REPO = Path(__file__).resolve().parent.parent
IMAGE_DATA_DIR = "/home/ray/data"  # where the image stages MNIST (image/Dockerfile)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
POLL_S = 0.5
# This machine's budget for worker CPUs (the head's are the Tune driver's only).
MAX_WORKER_CPUS = float(os.cpu_count() or 2)
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_TOKEN = secrets.token_hex(32)
_UNITS = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("500m", "3Gi", 2) as a number."""
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class ManifestJob:
    name: str
    entrypoint: str
    runtime_env: dict[str, Any]
    active_deadline_s: float
    backoff_limit: int
    head: NodeSpec
    workers: list[NodeSpec]
    notes: list[str] = field(default_factory=list)


@dataclass
class Mapping:
    """Where the pods' volumes and the image's data live on this machine."""

    volumes_root: Path
    data_dir: Path
    dataset: str

    def volume(self, claim: str) -> Path:
        path = self.volumes_root / claim
        path.mkdir(parents=True, exist_ok=True)
        return path


def _node(name: str, group: dict[str, Any], mapping: Mapping, notes: list[str]) -> NodeSpec:
    pod = group["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"].startswith("ray-")]
    params = group.get("rayStartParams", {})
    limits = container.get("resources", {}).get("limits", {})
    cpus = quantity(params.get("num-cpus", limits.get("cpu", 1)))
    gpus = quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
    resources = {k: quantity(v) for k, v in group.get("resources", {}).items()}
    memory = int(quantity(limits["memory"])) if "memory" in limits else None
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod.get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    mounts = {
        m["mountPath"]: claims[m["name"]]
        for m in container.get("volumeMounts", [])
        if m["name"] in claims
    }
    env: dict[str, str] = {}
    for item in container.get("env", []):
        value = str(item.get("value", ""))
        for mount_path, claim in mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                value = str(mapping.volume(claim)) + value[len(mount_path) :]
        env[item["name"]] = value
    if env.get("DATA_DIR") == IMAGE_DATA_DIR:
        env["DATA_DIR"] = str(mapping.data_dir)
        env["DATASET"] = mapping.dataset
    notes.append(
        f"{name}: {cpus:g} CPU, {gpus:g} GPU, resources {resources}, memory "
        f"{(memory or 0) / 2**30:.1f} GiB; mounts "
        + ", ".join(f"{p} -> {mapping.volume(c)}" for p, c in mounts.items())
    )
    return NodeSpec(
        name=name, cpus=cpus, gpus=gpus, resources=resources, memory_bytes=memory, env=env
    )


def parse(manifest: Path, mapping: Mapping, worker_replicas: int | None = None) -> ManifestJob:
    (doc,) = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    if doc.get("kind") != "RayJob":
        raise ValueError(f"{manifest} is not a RayJob")
    spec = doc["spec"]
    cluster = spec["rayClusterSpec"]
    notes = [
        f"image content: DATA_DIR {IMAGE_DATA_DIR} -> {mapping.data_dir} "
        f"(DATASET={mapping.dataset}, staged locally in place of the image's MNIST); "
        f"code from {REPO} (PYTHONPATH) in place of the image's /home/ray/app"
    ]
    head = _node("head", cluster["headGroupSpec"], mapping, notes)
    workers = []
    for group in cluster.get("workerGroupSpecs", []):
        replicas = group.get("replicas", group.get("minReplicas", 0))
        if worker_replicas is not None:
            notes.append(
                f"{group['groupName']}: {worker_replicas} replicas (test override of {replicas})"
            )
            replicas = worker_replicas
        for i in range(replicas):
            workers.append(_node(f"{group['groupName']}-{i}", group, mapping, notes))
    total = sum(w.cpus for w in workers)
    if total > MAX_WORKER_CPUS:
        factor = MAX_WORKER_CPUS / total
        workers = [
            NodeSpec(
                w.name,
                round(w.cpus * factor, 2),
                w.gpus,
                w.resources,
                w.memory_bytes,
                w.object_store_bytes,
                w.env,
            )
            for w in workers
        ]
        notes.append(
            f"worker CPUs scaled by {factor:.2f} to fit this machine's {MAX_WORKER_CPUS:g} cores"
        )
    notes.append("object store: 256 MiB per node (scaled down from Ray's default)")
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "{}") or {}
    return ManifestJob(
        name=doc["metadata"]["name"],
        entrypoint=spec["entrypoint"],
        runtime_env=runtime_env,
        active_deadline_s=float(spec.get("activeDeadlineSeconds", 3600)),
        backoff_limit=int(spec.get("backoffLimit", 0)),
        head=head,
        workers=workers,
        notes=notes,
    )


@dataclass
class Attempt:
    number: int
    status: str
    seconds: float
    log_path: Path


@dataclass
class HarnessResult:
    status: str
    attempts: list[Attempt]

    def logs(self) -> str:
        return "\n".join(a.log_path.read_text() for a in self.attempts if a.log_path.exists())


# Called every poll while a job runs: (attempt number, its cluster). Tests use it to kill
# nodes at the moment they choose.
Monitor = Callable[[int, LocalCluster], None]


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM (a CI timeout, `kill`) into SystemExit so the nodes are torn down."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def token_auth() -> Iterator[None]:
    """Ray token authentication on, with a one-off token, as authOptions.mode=token does."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ["RAY_AUTH_MODE"] = "token"
    # One token per process: Ray's client caches the first token it reads.
    os.environ["RAY_AUTH_TOKEN"] = _TOKEN
    _reload_ray_auth()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reload_ray_auth()


def _reload_ray_auth() -> None:
    """Make this process's Ray client see the current RAY_AUTH_* variables.

    Ray reads them into a C++ config once per process (as ray.init's own token setup
    does, refresh it), so a test that imported Ray earlier with auth disabled would
    otherwise send no token."""
    import ray._raylet as raylet

    raylet.Config.initialize("")
    raylet.AuthenticationTokenLoader.instance().reset_cache()


def start_cluster(job: ManifestJob) -> LocalCluster:
    cluster = LocalCluster(job.head)
    for count, worker in enumerate(job.workers, start=2):
        cluster.add_worker(worker)
        cluster.wait_for_nodes(count)  # one at a time: parallel raylet starts race for ports
    return cluster


def _submit(cluster: LocalCluster, job: ManifestJob, attempt: int) -> tuple[Any, str]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard_url)
    env_vars = {**job.runtime_env.get("env_vars", {}), "PYTHONPATH": str(REPO)}
    runtime_env = {**job.runtime_env, "env_vars": env_vars}
    job_id = client.submit_job(
        entrypoint=job.entrypoint,
        runtime_env=runtime_env,
        submission_id=f"{job.name}-attempt{attempt}-{secrets.token_hex(3)}",
    )
    return client, job_id


def _status(client: Any, job_id: str) -> str | None:
    try:
        return client.get_job_status(job_id).value
    except Exception:  # the head is gone: the attempt is lost, as when its pod dies
        return None


def _save_logs(client: Any, job_id: str, path: Path, status: str) -> None:
    try:
        text = client.get_job_logs(job_id)
    except Exception as err:  # the head is gone with its logs
        text = f"(logs unavailable: {type(err).__name__}; the cluster was lost)\n"
    path.write_text(f"=== {job_id}: {status}\n{text}")


def run(
    job: ManifestJob,
    log_dir: Path,
    monitor: Monitor | None = None,
    echo: Callable[[str], None] = print,
) -> HarnessResult:
    log_dir.mkdir(parents=True, exist_ok=True)
    for note in job.notes:
        echo(f"[harness] {note}")
    deadline = time.monotonic() + job.active_deadline_s
    attempts: list[Attempt] = []
    with token_auth(), sigterm_unwinds():
        for number in range(job.backoff_limit + 1):
            started = time.monotonic()
            echo(f"[harness] attempt {number}: starting {1 + len(job.workers)} Ray nodes")
            cluster = start_cluster(job)
            status = "LOST"
            log_path = log_dir / f"{job.name}-attempt{number}.log"
            try:
                client, job_id = _submit(cluster, job, number)
                echo(f"[harness] attempt {number}: submitted {job_id}: {job.entrypoint}")
                while time.monotonic() < deadline:
                    current = _status(client, job_id)
                    if current is None:
                        break  # lost with its cluster
                    if current in TERMINAL:
                        status = current
                        break
                    if monitor is not None:
                        monitor(number, cluster)
                    time.sleep(POLL_S)
                else:
                    status = "DEADLINE_EXCEEDED"
                    client.stop_job(job_id)
                _save_logs(client, job_id, log_path, status)
            finally:
                cluster.shutdown(keep_logs=status != "SUCCEEDED")
            attempts.append(Attempt(number, status, time.monotonic() - started, log_path))
            echo(
                f"[harness] attempt {number}: {status} after {attempts[-1].seconds:.0f}s "
                f"(logs: {log_path})"
            )
            if status in ("SUCCEEDED", "DEADLINE_EXCEEDED"):
                break
    return HarnessResult(attempts[-1].status, attempts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument(
        "--volumes",
        type=Path,
        default=Path("/tmp/ray-tune-harness/volumes"),
        help="where the pods' PersistentVolumeClaims are mapped",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", "/usr/share/datasets/fashion-mnist")),
    )
    parser.add_argument("--dataset", default=os.environ.get("DATASET", "fashion-mnist"))
    args = parser.parse_args(argv)
    mapping = Mapping(args.volumes, args.data_dir, args.dataset)
    job = parse(args.manifest, mapping)
    result = run(job, args.volumes.parent / "logs")
    print(result.logs()[-6000:])
    summary = {
        "status": result.status,
        "attempts": [{"status": a.status, "seconds": round(a.seconds, 1)} for a in result.attempts],
    }
    print(json.dumps(summary))
    return 0 if result.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
