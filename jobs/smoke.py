"""`python -m jobs.smoke`: minutes and cents that prove a cluster before GPU hours are spent.

Not a walkthrough stage (not in STAGE=all): the RayJob k8s/<variant>/rayjob-smoke.yaml runs
it on a new cluster, and `make smoke CLOUD=...` applies that and adds what only the cluster's
events show (jobs/kube/smoke_events.py). Each check ends `ok`, `problem` (with its fix) or
`skipped` (with why: a check this cluster cannot make real, named in SMOKE_SKIP by the
podman runner, never by a cloud):

  gpu_worker      an ACCELERATOR_TYPE worker joins (from zero where the pool autoscales)
  cuda            torch sees a CUDA device of that model on it, and a matmul runs there
  volume          a file the worker writes on the shared volume is read back by the head
  gcs_service     the worker reaches the head's GCS through its Service name (FQ_RAY_IP)
  network_policy  the NetworkPolicy lets that through and stops the worker's other egress

Writes <STORAGE_PATH>/smoke/smoke.json (checks and the job's side of the cold-start
timeline) and prints it as a table; exit 1 if any check is a problem.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobs.core.parsers import ConfigError, accelerator_type, integer
from jobs.core.reading import Parser
from jobs.core.settings import experiment_dir

NAME = "smoke"
MODULE = "jobs.smoke"
REPORT_FILE = "smoke.json"
# activeDeadlineSeconds of its RayJob besides the cold start of a GPU node: the probe itself
# takes seconds, the rest is the head's start and the job's submission.
DEADLINE_S = 900
CHECKS = ("gpu_worker", "cuda", "volume", "gcs_service", "network_policy")
# An address a worker must not reach under the NetworkPolicy: the Kubernetes API (only the
# head's autoscaler may; k8s/networkpolicy.yaml, ray-tune-k8s-head-to-apiserver).
API_SERVER = ("kubernetes.default.svc", 443)
CONNECT_TIMEOUT_S = 3.0
MATMUL_N = 1024
# The uid every Ray pod runs as (the manifests' runAsUser: rayproject/ray's `ray` user).
POD_UID = 1000


@dataclass(frozen=True)
class SmokeSettings:
    storage_dir: Path  # <STORAGE_PATH>/smoke
    accelerator_type: str
    gpu_wait_s: int
    skip: Mapping[str, str]  # check -> why this cluster cannot make it real
    variant: str = ""  # the values file its RayJob was rendered from (SMOKE_VARIANT)


@dataclass
class Check:
    name: str
    status: str  # ok, problem, skipped
    detail: str
    fix: str = ""


@dataclass
class Probe:
    """What the task on the GPU worker saw (probe_worker)."""

    node_id: str
    uid: int
    started: float  # time.time() when the task began on the worker
    cuda: bool = False
    device_name: str = ""
    matmul_error: float | None = None  # max |GPU - CPU| of a MATMUL_N matmul
    gpu_ready: float | None = None  # time.time() when the first CUDA matmul came back
    cuda_error: str = ""
    volume_file: str = ""
    token: str = ""
    volume_error: str = ""
    gcs: str = ""  # host:port the worker tried (FQ_RAY_IP, RAY_PORT), "" off KubeRay
    gcs_error: str = ""  # "" when it connected
    api_error: str = ""  # "" when the API server answered: the policy let it through
    finished: float = 0.0


@dataclass
class Report:
    accelerator_type: str
    started: float
    checks: list[Check] = field(default_factory=list)
    timeline: dict[str, float | None] = field(default_factory=dict)  # seconds from start
    variant: str = ""  # make manifests COLD_START=<this file> applies it to this variant

    @property
    def ok(self) -> bool:
        return all(c.status != "problem" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def read_settings(env: Mapping[str, str]) -> SmokeSettings:
    skip: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in env.get("SMOKE_SKIP", "").split(","))):
        name, _, why = item.partition("=")
        if name not in CHECKS:
            raise ConfigError(f"SMOKE_SKIP names {name!r}; checks: {', '.join(CHECKS)}")
        skip[name] = why or "SMOKE_SKIP"
    return SmokeSettings(
        storage_dir=experiment_dir(NAME, env),
        accelerator_type=accelerator_type(env.get("ACCELERATOR_TYPE", "T4"), "ACCELERATOR_TYPE"),
        gpu_wait_s=integer(0)(env.get("GPU_WAIT_S", "1800"), "GPU_WAIT_S"),
        skip=skip,
        variant=env.get("SMOKE_VARIANT", ""),
    )


def _connect_error(address: tuple[str, int]) -> str:
    """ "" when a TCP connection to address opens within CONNECT_TIMEOUT_S, else why not."""
    try:
        with socket.create_connection(address, timeout=CONNECT_TIMEOUT_S):
            return ""
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def probe_worker(storage_dir: str, env: Mapping[str, str] | None = None) -> Probe:
    """Runs on the GPU worker: CUDA, a file on the volume, the head's GCS and the API server.
    `env`: the worker's own environment (KubeRay's FQ_RAY_IP is set on worker pods only)."""
    import ray

    env = os.environ if env is None else env

    probe = Probe(ray.get_runtime_context().get_node_id(), os.getuid(), time.time())
    try:
        import torch

        probe.cuda = torch.cuda.is_available()
        if probe.cuda:
            probe.device_name = torch.cuda.get_device_name(0)
            a = torch.randn(MATMUL_N, MATMUL_N)
            on_gpu = (a.cuda() @ a.cuda()).cpu()
            probe.gpu_ready = time.time()
            probe.matmul_error = float((on_gpu - a @ a).abs().max())
    except Exception as err:  # a broken driver raises here: it is the finding
        probe.cuda_error = f"{type(err).__name__}: {err}"
    probe.token = secrets.token_hex(8)
    path = Path(storage_dir) / f"volume-probe-{probe.node_id[:12]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(probe.token)
        probe.volume_file = str(path)
    except OSError as err:
        probe.volume_error = f"{type(err).__name__}: {err}"
    if env.get("FQ_RAY_IP"):  # set by KubeRay on worker pods (pod.go, setContainerEnvVars)
        probe.gcs = f"{env['FQ_RAY_IP']}:{env.get('RAY_PORT', '6379')}"
        probe.gcs_error = _connect_error((env["FQ_RAY_IP"], int(env.get("RAY_PORT", "6379"))))
        probe.api_error = _connect_error(API_SERVER)
    probe.finished = time.time()
    return probe


def judge(
    settings: SmokeSettings,
    probe: Probe | None,
    joined_s: float | None,
    from_zero: bool,
    read_back: Callable[[str], tuple[str, int] | None],
) -> list[Check]:
    """Each check's verdict from what the worker saw; `read_back(path)` is the head's read of
    the worker's file: (content, owner uid), or None where it cannot read it."""
    model = settings.accelerator_type
    if probe is None or joined_s is None:
        why = (
            f"no {model} worker joined within GPU_WAIT_S={settings.gpu_wait_s}s"
            if joined_s is None
            else f"a {model} worker joined but the probe task did not finish on it"
        )
        fix = (
            f"kubectl describe pod of the pending {model} worker; make preflight (autoscaler "
            "rights, GPU quota, pool labels and taints)"
        )
        unreached = "not reached: no worker ran the probe"
        checks = [Check("gpu_worker", "problem", why, fix)]
        checks += [Check(name, "problem", unreached, fix) for name in CHECKS[1:]]
        return _skips(settings, checks)
    where = "scaled up from zero" if from_zero else "already up at the start"
    joined = f"{model} worker {probe.node_id[:12]} {where}, {joined_s:.0f} s in"
    checks = [
        Check("gpu_worker", "ok", joined),
        _cuda(probe, model),
        _volume(probe, read_back(probe.volume_file) if probe.volume_file else None),
        *_network(probe),
    ]
    return _skips(settings, checks)


def _cuda(probe: Probe, model: str) -> Check:
    matches = (probe.matmul_error or 0.0) < 1e-2
    if probe.cuda and model.lower() in probe.device_name.lower() and matches:
        return Check("cuda", "ok", f"{probe.device_name}; matmul {MATMUL_N}^2 matches the CPU's")
    if probe.cuda_error:
        seen = probe.cuda_error
    elif not probe.cuda:
        seen = "torch sees no CUDA device"
    elif model.lower() not in probe.device_name.lower():
        seen = f"CUDA device {probe.device_name!r}, not a {model}"
    else:
        seen = f"a matmul on {probe.device_name} differs from the CPU's by {probe.matmul_error}"
    fix = (
        "the NVIDIA driver and device plugin on the GPU pool: make device-plugin; "
        "kubectl describe node (nvidia.com/gpu allocatable)"
    )
    return Check("cuda", "problem", seen, fix)


def _volume(probe: Probe, seen_back: tuple[str, int] | None) -> Check:
    fix = "a ReadWriteMany claim mounted on every pod (make storage); fsGroup 100"
    if probe.uid != POD_UID:  # what every other pod writes as: files owned by mixed users
        ran = f"the worker runs as uid {probe.uid}, not the pods' {POD_UID}"
        return Check("volume", "problem", ran, "the pod template's securityContext.runAsUser")
    if probe.volume_error:
        return Check("volume", "problem", f"the worker could not write: {probe.volume_error}", fix)
    if seen_back is None or seen_back[0] != probe.token:
        return Check(
            "volume", "problem", f"the head does not see {probe.volume_file} as written", fix
        )
    if seen_back[1] != probe.uid:  # e.g. an NFS export that squashes or maps users
        owner = f"the head sees it owned by uid {seen_back[1]}, not the worker's uid {probe.uid}"
        return Check("volume", "problem", owner, f"{fix}; the file system's user mapping")
    return Check("volume", "ok", f"written by uid {probe.uid} on the worker, read by the head")


def _network(probe: Probe) -> list[Check]:
    if not probe.gcs:
        off = "not on KubeRay: the worker has no FQ_RAY_IP"
        return [Check("gcs_service", "skipped", off), Check("network_policy", "skipped", off)]
    fix = "the head's Service; the NetworkPolicy between project pods (make network-policy)"
    if probe.gcs_error:
        return [
            Check("gcs_service", "problem", f"{probe.gcs}: {probe.gcs_error}", fix),
            Check("network_policy", "problem", "the worker cannot reach the head's GCS", fix),
        ]
    reached = Check("gcs_service", "ok", f"{probe.gcs} reached from the worker")
    if probe.api_error:
        let = f"GCS let through; the API server refused ({probe.api_error})"
        return [reached, Check("network_policy", "ok", let)]
    enforce = (
        "a network plugin that enforces them (GKE Dataplane V2; the VPC CNI's network policy "
        "agent on EKS; Azure NPM or Cilium on AKS); make network-policy"
    )
    unenforced = "the worker reached the Kubernetes API: NetworkPolicies are not enforced"
    return [reached, Check("network_policy", "problem", unenforced, enforce)]


def _skips(settings: SmokeSettings, checks: list[Check]) -> list[Check]:
    """A check SMOKE_SKIP names is `skipped` with its reason, whatever it found."""
    return [
        Check(c.name, "skipped", settings.skip[c.name]) if c.name in settings.skip else c
        for c in checks
    ]


def table(report: Report) -> str:
    rows = [f"{'check':<16}{'status':<9}detail"]
    for c in report.checks:
        rows.append(f"{c.name:<16}{c.status:<9}{c.detail}")
        if c.status == "problem" and c.fix:
            rows.append(f"{'':<25}fix: {c.fix}")
    rows.append("timeline (s from the job's start)")
    for name, seconds in report.timeline.items():
        rows.append(f"  {name:<26}{'-' if seconds is None else f'{seconds:.1f}'}")
    return "\n".join(rows)


def _gpu_nodes(accelerator: str) -> list[str]:
    import ray

    key = f"accelerator_type:{accelerator}"
    return [n["NodeID"] for n in ray.nodes() if n.get("Alive") and key in n["Resources"]]


def run(settings: SmokeSettings) -> Report:
    import ray
    from ray.autoscaler.sdk import request_resources

    report = Report(settings.accelerator_type, time.time(), variant=settings.variant)
    ray.init()
    at_start = _gpu_nodes(settings.accelerator_type)
    resource = f"accelerator_type:{settings.accelerator_type}"
    print(f"[smoke] {len(at_start)} {settings.accelerator_type} worker(s) at the start", flush=True)
    if not at_start:  # ask the autoscaler for one (a no-op on a cluster without it)
        request_resources(bundles=[{"GPU": 1, resource: 0.001}])
    joined_s = None
    # A local Ray (no RAY_ADDRESS) has no pool to scale: what it has now is all it gets.
    wait_s = settings.gpu_wait_s if os.environ.get("RAY_ADDRESS") else 0
    deadline = time.monotonic() + wait_s
    while True:
        if _gpu_nodes(settings.accelerator_type):
            joined_s = time.time() - report.started
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(2)
    probe = None
    if joined_s is not None:
        task = ray.remote(num_cpus=0, num_gpus=1, resources={resource: 0.001})(probe_worker)
        try:
            probe = ray.get(task.remote(str(settings.storage_dir)), timeout=600)
        except Exception as err:  # the task's own failure is a finding, reported below
            print(f"[smoke] the probe task failed: {err}", flush=True)
    request_resources(bundles=[])
    report.checks = judge(settings, probe, joined_s, not at_start, _read_back)
    report.timeline = {
        "gpu_worker_joined": joined_s,
        "probe_started_on_worker": probe and probe.started - report.started,
        "gpu_ready": probe and probe.gpu_ready and probe.gpu_ready - report.started,
        "first_result": probe and probe.finished - report.started,
    }
    return report


def _read_back(path: str) -> tuple[str, int] | None:
    try:
        p = Path(path)
        return p.read_text(), p.stat().st_uid
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m jobs.smoke", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="print the settings and exit")
    try:
        args = parser.parse_args(argv)
        settings = read_settings(os.environ)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(asdict(settings), indent=2, default=str))
        return 0
    report = run(settings)
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    out = settings.storage_dir / REPORT_FILE
    out.write_text(json.dumps(report.as_dict(), indent=2))
    print(table(report), flush=True)
    print(f"[smoke] wrote {out}", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
