"""The runner's podman: containers and networks labelled with the run, its log and names."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"
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


def prepare_volume(path: Path, fs_group: int = FS_GROUP_DEFAULT) -> None:
    """The claim as a host folder, owned the way fsGroup leaves a volume: group-owned by
    the fsGroup, group-writable, setgid so new files keep the group."""
    path.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chown(path, -1, fs_group)
    path.chmod(0o2775)
