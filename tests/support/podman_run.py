"""One RayJob run by the podman runner from a test: started in the background, read as it goes,
waited for, explained on failure; the manifests and values the e2e tests hand it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import tune_files
from tests.support.runner.podman import CONTAINERS_CONF, RUN_LABEL
from tests.support.runs import CI_SIZE, REPO

KIND = REPO / "k8s" / "kind"
RAY_UID = 1000


def variant(
    tmp_path: Path, stage: str, spec: dict[str, Any] | None = None, **env_vars: str
) -> Path:
    """The kind manifest of `stage` with other `spec` fields or more runtimeEnvYAML settings."""
    doc = yaml.safe_load((KIND / f"rayjob-{stage}.yaml").read_text())
    env = yaml.safe_load(doc["spec"]["runtimeEnvYAML"])
    env["env_vars"].update(env_vars)
    doc["spec"]["runtimeEnvYAML"] = yaml.safe_dump(env)
    doc["spec"].update(spec or {})
    path = tmp_path / f"rayjob-{stage}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# Kubernetes' waits that no e2e test is about, shortened (`make e2e-podman` keeps the
# defaults, 30 s and 10 s): a deleted cluster's pods' grace period, which overlaps the next
# attempt's start, and the back-off before an exited container or submitter is replaced.
SHORT_WAITS = ("--grace-s", "5", "--restart-delay-s", "2")


def values_file(values: str | Path) -> Path:
    """A variant's values file by name (k8s/values/NAME.yaml), or a test's own file."""
    return values if isinstance(values, Path) else REPO / "k8s" / "values" / f"{values}.yaml"


class Run:
    """One `python -m tests.support.runner` in the background."""

    def __init__(
        self, manifest: Path, work: Path, *flags: str, values: str | Path = "kind"
    ) -> None:
        # Unique per run: tests running side by side must not see each other's containers.
        self.work, self.run_id = work, f"pytest-{work.parent.name}-{secrets.token_hex(3)}"
        self.volume = work / "volume"
        self.log = work / "runner.log"
        work.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.support.runner", str(manifest)),
                *("--work", str(work), "--run-id", self.run_id),
                *("--values", str(values_file(values))),
                *SHORT_WAITS,
                *flags,
            ],
            cwd=REPO,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout_s: float = 1500) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # the runner removes its containers on SIGTERM
            self.proc.wait(timeout=120)
        lines = self.log.read_text().strip().splitlines()
        return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}

    def explain(self) -> str:
        return self.log.read_text()[-8000:]

    def podman(self, *args: str) -> str:
        env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
        return subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=env, check=True
        ).stdout

    def containers(self, node_type: str) -> list[str]:
        """The running containers of this run with that KubeRay node type (head or worker);
        `podman ps` leaves paused ones out."""
        return self.podman(
            *("ps", "--format", "{{.Names}}"),
            *("--filter", f"label={RUN_LABEL}={self.run_id}"),
            *("--filter", f"label=ray.io/node-type={node_type}"),
        ).split()

    def container(self, node_type: str) -> str:
        """The running container of this run with that KubeRay node type (head or worker)."""
        names = self.containers(node_type)
        assert names, f"no running {node_type} container"
        return names[0]

    def delete_pod(self, node_type: str) -> str:
        """That pod gone at once, without a notice or a grace period (a node lost under it):
        its container removed, which the runner's kubelet sees as the pod no longer listed."""
        name = self.container(node_type)
        self.podman("rm", "-f", "-t", "0", name)
        return name

    def kill(self, node_type: str) -> str:
        """SIGKILL the container of this run with that KubeRay node type (head or worker)."""
        name = self.container(node_type)
        self.podman("kill", "--signal", "KILL", name)
        return name

    @contextlib.contextmanager
    def frozen(self, node_type: str) -> Iterator[None]:
        """That container paused (its processes frozen) for the length of the block: what a
        test reads on the volume then cannot change under it from there."""
        name = self.container(node_type)
        self.podman("pause", name)
        try:
            yield
        finally:
            self.podman("unpause", name)


def experiment(run: Run, stage: str) -> Path:
    return run.volume / stage


def trial_epochs(run: Run, stage: str) -> dict[str, list[int]]:
    return tune_files.trial_epochs(experiment(run, stage))


def wait_until(condition: Callable[[], bool], run: Run, timeout_s: float = 900) -> None:
    """tune_files.wait_for, failing with the run's log."""
    try:
        tune_files.wait_for(
            condition, "the condition", timeout_s, alive=lambda: run.proc.poll() is None
        )
    except AssertionError as err:
        pytest.fail(f"{err}\n{run.explain()}")


def files(root: Path) -> Iterator[Path]:
    yield from (p for p in root.rglob("*"))


def assert_ran_as_the_pods_declare(run: Run, stage: str) -> None:
    """Trials on the fake GPU; every file written by the pods' non-root user, never by root,
    on the group-shared volume; every Ray container on its read-only root filesystem."""
    summary = json.loads((experiment(run, stage) / "results.json").read_text())
    for trial in summary["trials"]:
        assert trial["metrics"]["assigned_gpus"] >= 1.0  # placed on the fake GPU
        assert trial["metrics"]["on_cuda"] == 0.0
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in files(experiment(run, stage))}
    assert owners == {(RAY_UID, 100)}, owners
    pods = [
        line for line in run.log.read_text().splitlines() if " pod " in line and "ray start" in line
    ]
    assert pods and all("(read-only root)" in line for line in pods), pods


def leftovers(run: Run) -> list[str]:
    """Containers and networks that still carry this run's label."""
    env = os.environ | {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    label = f"label={RUN_LABEL}={run.run_id}"
    out = []
    for command in (
        ["ps", "-a", "--format", "{{.Names}}"],
        ["network", "ls", "--format", "{{.Name}}"],
    ):
        proc = subprocess.run(
            ["podman", *command, "--filter", label],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        out += proc.stdout.split()
    return out


K8S = REPO / "k8s"
# CI-sized settings passed as a user would, in the RayJob's runtime env (`--env`): the
# committed manifest is not edited.
CI_ENV = {**CI_SIZE, "TUNE_NUM_EPOCHS": "3"}


def cloud_run(
    manifest: Path, work: Path, image: str, *flags: str, values: str | Path = "gke", **env: str
) -> Run:
    env_flags = [f for k, v in (CI_ENV | env).items() for f in ("--env", f"{k}={v}")]
    return Run(manifest, work, "--image", image, *env_flags, *flags, values=values)


def cloud_variant(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """The default cloud's asha RayJob with one thing changed (a test's broken manifest)."""
    doc = yaml.safe_load((K8S / "rayjob-asha.yaml").read_text())
    change(doc)
    path = tmp_path / "rayjob-asha.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
