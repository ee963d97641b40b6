"""`make submit STAGE=...`: run a stage through the Ray Jobs API, as a KubeRay RayJob does.

With RAY_ADDRESS (a dashboard URL such as http://127.0.0.1:8265, e.g. a port-forwarded
KubeRay head) the stage is submitted there with this folder as its working_dir. Without it,
a private local Ray head is started for the run (own temp dir, free ports, token
authentication on with a one-off token), the job is submitted to it, its logs are streamed,
and afterwards exactly the processes of that head are stopped. The exit status follows the
job's status.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobs.cli import EXIT_BAD_INPUT, validate
from jobs.config import OPTIONS, STAGES, ConfigError, check_address_reachable, resolve

REPO_ROOT = Path(__file__).resolve().parent.parent
# Settings forwarded to the job when they are set here (the names of jobs.config).
FORWARDED_ENV = (
    *(o.env for o in OPTIONS if o.env and o.env != "RAY_ADDRESS"),
    "TUNE_GLOBAL_CHECKPOINT_S",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
)
# Uploaded with working_dir to a remote cluster: the code, not the venv or data.
WORKING_DIR_EXCLUDES = [".venv", "data", ".git", "tests", "image", "k8s", "*.pyc"]
HEAD_START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local Ray head exited early (code {proc.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 until the client sends the token): it is up
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the local Ray head's dashboard did not answer at {url} in {timeout_s}s")


@dataclass(frozen=True)
class LocalHead:
    dashboard_url: str  # for the Jobs API
    gcs_address: str  # for ray.init(address=...)
    temp_dir: str
    pgid: int


@contextmanager
def local_head(num_cpus: int | None = None, keep_logs: bool = False) -> Iterator[LocalHead]:
    """Start a private Ray head; yield where it listens; stop only its processes.

    `ray start --block` runs in a new process group, and Ray gives its children the kernel
    fate-sharing signal, so killing that group ends the head, its raylet and workers, and no
    other Ray instance on the machine.
    """
    temp_dir = tempfile.mkdtemp(prefix="rtk-ray-")  # short: Ray's socket paths are limited
    port, dash = _free_port(), _free_port()
    cpus = num_cpus or os.cpu_count() or 1
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        f"--dashboard-port={dash}",
        "--dashboard-host=127.0.0.1",
        f"--num-cpus={cpus}",
        "--num-gpus=0" if not _has_cuda() else "",
        f"--object-store-memory={512 * 1024**2}",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=true",
        "--disable-usage-stats",
        f"--ray-client-server-port={_free_port()}",
    ]
    cmd = [c for c in cmd if c]
    log_path = Path(temp_dir) / "head.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True
        )
    url = f"http://127.0.0.1:{dash}"
    try:
        _wait_http(f"{url}/api/version", HEAD_START_TIMEOUT_S, proc)
        print(f"[submit] local Ray head up at {url} (temp dir {temp_dir})", flush=True)
        yield LocalHead(url, f"127.0.0.1:{port}", temp_dir, proc.pid)
    except BaseException:
        keep_logs = True
        raise
    finally:
        _stop_group(proc)
        if keep_logs:
            print(f"[submit] Ray head logs kept in {temp_dir}", flush=True)
        else:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_group(proc: subprocess.Popen, grace_s: float = 15) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(proc.pid):
                proc.poll()
                return
            time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields: state ppid pgrp ...; zombies have exited already
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _job_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


async def _stream(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def submit_and_wait(address: str, stage: str, stage_args: list[str], *, local: bool) -> str:
    """Submit the stage, stream its logs to the end, return the job's final status."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    entrypoint = " ".join(
        [sys.executable if local else "python", "-m", f"jobs.{stage}", *stage_args]
    )
    env = _job_env()
    if local:
        # Same machine: import the code in place rather than uploading it.
        runtime_env = {"env_vars": {**env, "PYTHONPATH": str(REPO_ROOT)}}
    else:
        runtime_env = {
            "working_dir": str(REPO_ROOT),
            "excludes": WORKING_DIR_EXCLUDES,
            "env_vars": env,
        }
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env=runtime_env,
        submission_id=f"{stage}-{secrets.token_hex(4)}",
    )
    print(f"[submit] job {job_id}: {entrypoint}", flush=True)
    try:
        asyncio.run(_stream(client, job_id))
    except KeyboardInterrupt:
        client.stop_job(job_id)
        raise
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    print(f"[submit] job {job_id} {status.value}", flush=True)
    return "SUCCEEDED" if status == JobStatus.SUCCEEDED else status.value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobs.submit",
        description="Submit a stage through the Ray Jobs API: to RAY_ADDRESS (a dashboard URL) "
        "when set, else to a private local Ray head started for the run.",
    )
    parser.add_argument("stage", help=f"one of {', '.join(STAGES)}")
    parser.add_argument(
        "stage_args", nargs=argparse.REMAINDER, help="arguments passed to the stage (e.g. --fresh)"
    )
    args = parser.parse_args(argv)
    address = os.environ.get("RAY_ADDRESS") or None
    try:
        if args.stage not in STAGES:
            raise ConfigError(f"unknown stage {args.stage!r}; choose one of {', '.join(STAGES)}")
        # Check the settings here first: a bad value fails before any head starts.
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        settings = resolve(args.stage, args.stage_args, env)
        if address is None:
            validate(settings)
        else:
            check_address_reachable(address)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if settings.dry_run:
        print(settings.to_json())
        return 0
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if address is not None:
        status = submit_and_wait(address, args.stage, args.stage_args, local=False)
        return 0 if status == "SUCCEEDED" else 1
    # A one-off token for the private head: auth stays on, nothing lands in ~/.ray.
    if os.environ["RAY_AUTH_MODE"] == "token":
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    with local_head() as head:
        status = submit_and_wait(head.dashboard_url, args.stage, args.stage_args, local=True)
    return 0 if status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
