"""A private Ray head on this machine: the local cluster of `make submit`.

The head is one `ray start --block` process tree with its own temp dir and ports, like a pod.
`stop()` shuts it down gracefully, then SIGKILLs what is left of the tree (raylet, workers,
the job driver that Ray starts in a session of its own). Nothing outside the tree this module
started is ever signalled: no `ray stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from jobs.core.settings import MIB

START_TIMEOUT_S = 120
START_ATTEMPTS = 3  # a head that exits while starting is started again, on new ports


# Where a cluster's own processes (Ray Train's placement-group cleaner among them) find its
# dashboard's State API; unset, they auto-detect the local cluster, and fail beside another.
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_stats() -> dict[int, list[str]]:
    """/proc/<pid>/stat of every process, the fields after the command name (state first)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            table[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
    return table


def _parents() -> dict[int, int]:
    # Zombies have exited already.
    return {pid: int(f[1]) for pid, f in proc_stats().items() if f[0] != "Z"}


def process_tree(root: int) -> list[int]:
    """`root` and all its living descendants, whatever session or group they moved to."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root] if root in parents else []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        living = _parents()
        alive = [p for p in alive if p in living]
    return alive


@dataclass(frozen=True)
class NodeSpec:
    """What a Ray node offers; mirrors a KubeRay group's rayStartParams and limits."""

    name: str
    cpus: float
    gpus: float = 0
    resources: dict[str, float] = field(default_factory=dict)
    memory_bytes: int | None = None
    object_store_bytes: int = 256 * MIB
    env: dict[str, str] = field(default_factory=dict)


class RayNode:
    """A Ray head node: `ray start --head --block` with free ports and its own temp dir."""

    def __init__(self, spec: NodeSpec, temp_dir: Path) -> None:
        self.spec = spec
        self.temp_dir = temp_dir
        self.log_path = temp_dir / f"{spec.name}.log"
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.agent_port = free_port()
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            f"--num-cpus={spec.cpus:g}",
            f"--num-gpus={spec.gpus:g}",
            f"--object-store-memory={spec.object_store_bytes}",
            f"--dashboard-agent-listen-port={self.agent_port}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            "--disable-usage-stats",
            "--head",
            f"--port={self.gcs_port}",
            f"--temp-dir={temp_dir}",
            f"--dashboard-port={self.dashboard_port}",
            "--dashboard-host=127.0.0.1",
            "--include-dashboard=true",
            f"--ray-client-server-port={free_port()}",
        ]
        if spec.resources:
            cmd.append(f"--resources={json.dumps(spec.resources)}")
        if spec.memory_bytes:
            cmd.append(f"--memory={spec.memory_bytes}")
        env = {**os.environ, **spec.env}
        # Its processes find its dashboard by name, not by auto-detecting the local cluster,
        # which fails beside another Ray (jobs/core/connection.py: local_init_kwargs).
        env[API_SERVER_ENV] = f"http://127.0.0.1:{self.dashboard_port}"
        # `python` in a job's entrypoint must be this interpreter, as in the image.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 20) -> None:
        """Graceful shutdown (ray start's SIGTERM handler), then SIGKILL what is left."""
        if not self.alive:
            _signal_all(process_tree(self.proc.pid), signal.SIGKILL)
            return
        tree = process_tree(self.proc.pid)
        group = self.proc.pid
        self.proc.send_signal(signal.SIGTERM)
        leftovers = _wait_gone(tree, grace_s)
        _signal_all(leftovers, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        _wait_gone(leftovers, 5)
        self.proc.wait()


class ExitedEarly(RuntimeError):
    """The node's process ended before it answered."""


def _wait_http(url: str, node: RayNode, deadline: float) -> None:
    """Until `url` answers, the node exits (ExitedEarly), or time.monotonic() reaches deadline."""
    while time.monotonic() < deadline:
        if not node.alive:
            raise ExitedEarly(f"Ray node {node.spec.name} exited early; see {node.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 without the token): it is up
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} within {START_TIMEOUT_S}s; see {node.log_path}")


class LocalCluster:
    """A Ray head on this machine, with a private temp dir and free ports."""

    def __init__(self, head: NodeSpec, temp_root: str | None = None) -> None:
        # Short path: Ray's Unix socket paths must stay under ~107 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rtk-", dir=temp_root or "/tmp"))
        # A free port is picked, released, then bound by Ray: another process can take it in
        # between (measured once in a `make test`: the GCS could not bind its port beside
        # another cluster's start). An early exit starts the head again, on new ports.
        for attempt in range(1, START_ATTEMPTS + 1):
            self.head = RayNode(head, self.temp_dir)
            self.gcs_address = f"127.0.0.1:{self.head.gcs_port}"
            self.dashboard_url = f"http://127.0.0.1:{self.head.dashboard_port}"
            try:
                deadline = time.monotonic() + START_TIMEOUT_S
                _wait_http(f"{self.dashboard_url}/api/version", self.head, deadline)
                # Ready as KubeRay's head readiness probe has it (constant.go:
                # RayAgentRayletHealthPath): the dashboard agent answers too. Its address is in
                # the GCS right after, and the Jobs API hands every submission to it: a job
                # submitted before it is up waits 10 s, then fails "No available agent" (measured
                # once in CI, on a loaded machine).
                agent = f"http://127.0.0.1:{self.head.agent_port}/api/local_raylet_healthz"
                _wait_http(agent, self.head, deadline)
                return
            except ExitedEarly:
                self.head.stop()
                if attempt == START_ATTEMPTS:
                    raise
                print(
                    f"[cluster] the Ray head exited while starting (attempt {attempt}; see "
                    f"{self.head.log_path}); starting it again on new ports",
                    file=sys.stderr,
                    flush=True,
                )
            except BaseException:
                self.head.stop()
                raise

    def shutdown(self, keep_logs: bool = False) -> None:
        self.head.stop()
        if not keep_logs:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(keep_logs=exc_type is not None)
