"""`make submit STAGE=...`: run a stage through the Ray Jobs API, as a KubeRay RayJob does.

With RAY_ADDRESS (a dashboard URL such as http://127.0.0.1:8265, e.g. a port-forwarded
KubeRay head) the stage is submitted there with this folder as its working_dir. Without it,
a private local Ray head is started for the run (own temp dir, free ports, token
authentication on with a one-off token), the job is submitted to it, its logs are streamed,
and afterwards exactly the processes of that head are stopped. The exit status follows the
job's status.

`all` runs every stage in walkthrough order on that one cluster, each as its own job with
its own experiment folder (a rerun resumes each), stops at the first that fails, and ends
with one table: stage, trials, best metric, time, accelerator-hours, cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs import registry
from jobs.core import records
from jobs.core.cli import bad_input, prepare
from jobs.core.connection import DRIVER_ENV, WORKER_ENV
from jobs.core.localcluster import LocalCluster, NodeSpec
from jobs.core.parsers import ConfigError, ray_address
from jobs.core.reading import Parser, env_names
from jobs.core.stage import Stage

REPO_ROOT = Path(__file__).resolve().parent.parent
ALL = "all"  # every stage, in walkthrough order, on one cluster
# Uploaded with working_dir to a remote cluster: the code, not the venvs (.venv and the
# Makefile's client venv .venv-client) or data.
WORKING_DIR_EXCLUDES = [".venv*", "data", ".git", "tests", "image", "k8s", "*.pyc"]


@contextmanager
def local_head(num_cpus: int | None = None) -> Iterator[LocalCluster]:
    """A private Ray head for one run; only its own processes are stopped afterwards."""
    cpus = num_cpus or os.cpu_count() or 1
    cluster = LocalCluster(NodeSpec("head", cpus=cpus, gpus=_cuda_devices()))
    print(
        f"[submit] local Ray head up at {cluster.dashboard_url} (temp dir {cluster.temp_dir})",
        flush=True,
    )
    failed = True
    try:
        yield cluster
        failed = False
    finally:
        cluster.shutdown(keep_logs=failed)
        if failed:
            print(f"[submit] Ray head logs kept in {cluster.temp_dir}", flush=True)


def _cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def forwarded_env(stage: Stage) -> tuple[str, ...]:
    """What the job gets from this shell when set: the stage's settings (RAY_ADDRESS is the
    job's own cluster's) and the Ray fixes of jobs.core.connection."""
    return (*(n for n in env_names(stage) if n != "RAY_ADDRESS"), *DRIVER_ENV, *WORKER_ENV)


def _job_env(stage: Stage) -> dict[str, str]:
    return {k: os.environ[k] for k in forwarded_env(stage) if k in os.environ}


class LogTail:
    """The job's logs printed as they come, from a thread of their own: Ctrl-C then always
    reaches the main thread, which only waits (asyncio.run's own SIGINT handling cancels
    the tail, and the tail could go on streaming where the cancellation was lost)."""

    def __init__(self, client, job_id: str) -> None:
        self.client, self.job_id = client, job_id
        self.stopped = threading.Event()  # after Ctrl-C: print nothing more
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="log-tail", daemon=True)
        self.thread.start()

    async def _stream(self) -> None:
        async for lines in self.client.tail_job_logs(self.job_id):
            if self.stopped.is_set():
                return
            print(lines, end="", flush=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as err:  # raised in the main thread by wait()
            self.error = err

    def wait(self) -> None:
        """Until the logs end (the job is over); KeyboardInterrupt on Ctrl-C."""
        while self.thread.is_alive():
            self.thread.join(timeout=0.5)
        if self.error is not None:
            raise self.error


@dataclass
class Finished:
    status: str  # the Ray job's status: SUCCEEDED, FAILED, STOPPED
    summary: dict[str, Any] | None  # the stage's `summary:` line (records.stage_line)


def summary_of(logs: str, stage: str) -> dict[str, Any] | None:
    """The last `[<stage>] summary: {...}` line the stage's driver printed (outputs.finish)."""
    marker = f"[{stage}] summary: "
    for line in reversed(logs.splitlines()):
        if line.startswith(marker):
            try:
                return json.loads(line[len(marker) :])
            except ValueError:
                return None
    return None


NO_AGENT = "No available agent to submit job"
AGENT_WAIT_S = 120.0


def submit_when_agent_ready(
    submit: Callable[[], str], wait_s: float = AGENT_WAIT_S, pause_s: float = 2.0
) -> str:
    """`submit()`, again while the Jobs API answers that no agent is up yet (a head that has
    just started: its dashboard answers before its agent registers, and the API gives up on
    the agent after 10 s). Any other error, or still no agent after `wait_s`, is raised."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return submit()
        except RuntimeError as err:
            if NO_AGENT not in str(err) or time.monotonic() >= deadline:
                raise
            print(f"[submit] the head's job agent is not up; again in {pause_s:g} s", flush=True)
            time.sleep(pause_s)


def run_job(address: str, stage: Stage, stage_args: list[str], *, local: bool) -> Finished:
    """Submit the stage, stream its logs to the end; its final status and summary line."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    entrypoint = " ".join(
        [sys.executable if local else "python", "-m", f"jobs.{stage.name}", *stage_args]
    )
    env = _job_env(stage)
    if local:
        # Same machine: import the code in place rather than uploading it.
        runtime_env = {"env_vars": {**env, "PYTHONPATH": str(REPO_ROOT)}}
    else:
        runtime_env = {
            "working_dir": str(REPO_ROOT),
            "excludes": WORKING_DIR_EXCLUDES,
            "env_vars": env,
        }
    job_id = submit_when_agent_ready(
        lambda: client.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=f"{stage.name}-{secrets.token_hex(4)}",
        )
    )
    print(f"[submit] job {job_id}: {entrypoint}", flush=True)
    tail = LogTail(client, job_id)
    try:
        tail.wait()
    except KeyboardInterrupt:  # stop the job on the cluster too, then report how it ended
        tail.stopped.set()
        print(f"[submit] Ctrl-C: stopping job {job_id}", flush=True)
        client.stop_job(job_id)
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    print(f"[submit] job {job_id} {status.value}", flush=True)
    return Finished(
        "SUCCEEDED" if status == JobStatus.SUCCEEDED else status.value,
        summary_of(client.get_job_logs(job_id), stage.name),
    )


def run_all(address: str, stages: list[Stage], stage_args: list[str], *, local: bool) -> int:
    """The walkthrough in order on one cluster: one Ray job per stage, each in its own
    experiment folder (a rerun resumes each); stops at the first stage that fails."""
    lines: list[dict[str, Any]] = []
    for number, stage in enumerate(stages, 1):
        print(f"[submit] stage {number} of {len(stages)}: {stage.name}", flush=True)
        done = run_job(address, stage, stage_args, local=local)
        if done.summary is not None:
            lines.append(done.summary)
        if done.status != "SUCCEEDED" and len(stages) == 1:
            return 1
        if done.status != "SUCCEEDED":
            rest = ", ".join(s.name for s in stages[number:]) or "none"
            print(records.summary_table(lines), flush=True)
            print(
                f"error: stage {stage.name} ended {done.status} (its log is above and in "
                f"make logs STAGE={stage.name}); not run: {rest}",
                file=sys.stderr,
            )
            return 1
    if len(stages) > 1:
        print(f"[submit] the walkthrough's {len(stages)} stages on one cluster:", flush=True)
        print(records.summary_table(lines), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="python -m jobs.submit",
        description="Submit a stage through the Ray Jobs API: to RAY_ADDRESS (a dashboard URL) "
        "when set, else to a private local Ray head started for the run.",
    )
    parser.add_argument(
        "stage", help=f"one of {', '.join(registry.names())}, or {ALL} (each in that order)"
    )
    parser.add_argument(
        "stage_args", nargs=argparse.REMAINDER, help="arguments passed to the stage (e.g. --fresh)"
    )
    # Token authentication on, before Ray is imported (it reads the mode once): loading the
    # stage imports Ray. A private head gets a one-off token; nothing lands in ~/.ray.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if not os.environ.get("RAY_ADDRESS") and os.environ["RAY_AUTH_MODE"] == "token":
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    try:
        args = parser.parse_args(argv)
        address = ray_address(os.environ.get("RAY_ADDRESS", ""), "RAY_ADDRESS")
        # A stage module imports without Ray Tune or torch (the client venv): its settings
        # are read here, and the stage runs on the cluster (or on a private head).
        names = list(registry.names()) if args.stage == ALL else [args.stage]
        stages = [registry.load(name) for name in names]
        # Check the settings here first (every stage's, for `all`): a bad value fails
        # before any head starts. With an address, the job's storage and data are the
        # cluster's: only the address is checked.
        every = [prepare(stage, args.stage_args, local=address is None) for stage in stages]
    except ConfigError as err:
        return bad_input(err)
    if every[0].dry_run:
        for settings in every:
            print(settings.to_json())
        return 0
    if address is not None:
        return run_all(address, stages, args.stage_args, local=False)
    with local_head() as cluster:
        return run_all(cluster.dashboard_url, stages, args.stage_args, local=True)


if __name__ == "__main__":
    sys.exit(main())
