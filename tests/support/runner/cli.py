"""`python -m tests.support.runner`: its flags, its checks of them, and one run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support import kueue
from tests.support.kuberay import pods
from tests.support.kuberay.validation import validate_rayjob
from tests.support.runner.nodes import reclaim_schedule
from tests.support.runner.podman import (
    GRACE_S,
    REPO,
    RESTART_DELAY_S,
    RUN_LABEL,
    STATUS_CHECK_TIMEOUT_S,
    suffix,
)
from tests.support.runner.rayjob import RayJobRun
from tests.support.runner.state import (
    Options,
    Outcome,
    boot_seconds,
)


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
        prog="python -m tests.support.runner",
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
