"""The cluster path, executed: every kind RayJob run by tests/e2e/podman_rayjob.py in
containers of the image built from image/Dockerfile, with KubeRay's commands, env, limits
and retries; a head lost mid-run and a worker lost mid-trial.

Needs podman (runc, debootstrap for the stand-in base; .ci/run installs them); skips with
the reason where it is missing. The image is built first (`make image-offline`, cached)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import registry
from jobs.core.records import OOM_KILLED
from tests.e2e.podman_rayjob import CONTAINERS_CONF, RUN_LABEL
from tests.support import tune_files
from tests.support.manifests import docs, spot_render
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
    """One `python -m tests.e2e.podman_rayjob` in the background."""

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
                *(sys.executable, "-m", "tests.e2e.podman_rayjob", str(manifest)),
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


# Every stage once in CI: asha runs from the default cloud's T4 manifest instead (below,
# autoscaling from zero), checkpoint's kind manifest in the head-loss test (with other
# sizes, and a head lost on the way: the same checks and more), the others as committed.
KIND_STAGES = [s for s in registry.names() if s not in ("asha", "checkpoint")]


@pytest.mark.parametrize("stage", KIND_STAGES)
def test_every_kind_rayjob_succeeds_in_containers_of_the_image(
    stage: str, image: str, tmp_path: Path
) -> None:
    # The committed manifest, with CI-sized data and one epoch a trial passed as a user would
    # (--env): its pods, commands and trial counts are what is checked, not how much an
    # epoch reads or how many there are (the stage tests check the epochs).
    sizes = [
        f for k, v in {**CI_SIZE, "TUNE_NUM_EPOCHS": "1"}.items() for f in ("--env", f"{k}={v}")
    ]
    run = Run(KIND / f"rayjob-{stage}.yaml", tmp_path / "run", *sizes)
    outcome = run.wait()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    assert outcome["attempts"] == 1 and outcome["image"] == image
    summary = json.loads((experiment(run, stage) / "results.json").read_text())
    env = yaml.safe_load(
        yaml.safe_load((KIND / f"rayjob-{stage}.yaml").read_text())["spec"]["runtimeEnvYAML"]
    )["env_vars"]
    planned = 1 if stage == "baseline" else int(env["TUNE_NUM_SAMPLES"])
    assert len(summary["trials"]) == planned, summary["trials"]
    assert summary["counts"]["errored"] == 0
    assert_ran_as_the_pods_declare(run, stage)
    assert not list(run.work.glob("logs")), "logs are kept only for failed runs"


def test_head_lost_mid_checkpoint_resumes_from_the_volume(image: str, tmp_path: Path) -> None:
    # Two trials, one at a time on kind's one fake GPU: the first finished, the second in
    # flight when the head goes; CI-sized data (what is proven is the recovery).
    epochs = 3
    manifest = variant(
        tmp_path, "checkpoint", TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS=str(epochs), **CI_SIZE
    )
    run = Run(manifest, tmp_path / "run")
    folder = experiment(run, "checkpoint")
    recorded: dict[str, dict[str, Any]] = {}

    def one_finished_one_checkpointed_in_flight() -> bool:
        """What the resumed driver will restore, read from the snapshot it restores from: a
        finished trial, and one still running with a checkpoint (kind's one fake GPU runs
        the trials one at a time, on the worker)."""
        recorded.clear()
        recorded.update(tune_files.snapshot_trials(folder))
        done = [t for t in recorded.values() if t["status"] == "TERMINATED"]
        in_flight = [
            t
            for t in recorded.values()
            if t["status"] == "RUNNING" and t["checkpoint_dir_name"] and t["epoch"] < epochs
        ]
        return bool(done and in_flight)

    # The head dies while the snapshot holds both: checked again with the worker, and so
    # the running trial, frozen, so that the trial cannot finish between check and kill.
    while True:
        wait_until(one_finished_one_checkpointed_in_flight, run)
        with run.frozen("worker"):
            if one_finished_one_checkpointed_in_flight():
                run.kill("head")
                break
    finished = {n for n, t in recorded.items() if t["status"] == "TERMINATED"}
    outcome = run.wait()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    # The head came back (restartPolicy Always) or a new cluster was built; either way the
    # job was submitted again and found its experiment on the volume.
    assert outcome["submitter_pods"] + outcome["attempts"] >= 3, outcome
    summary = json.loads((folder / "results.json").read_text())
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    assert_ran_as_the_pods_declare(run, "checkpoint")
    # Not rerun: a finished trial's result.json holds each epoch once (a rerun would append
    # its epochs again). Its file is not compared with a copy read at the kill: the driver
    # syncs a trial's result.json to the volume apart from the snapshot, so a copy read then
    # could lag the snapshot (CI once read a finished trial's file short of its last epoch).
    after = trial_epochs(run, "checkpoint")
    assert finished and all(after[name] == list(range(1, epochs + 1)) for name in finished), after
    resumed = [t for t in summary["trials"] if t["metrics"]["start_epoch"] >= 1]
    assert resumed, "the in-flight trial did not resume from its checkpoint"


def test_a_worker_pod_lost_mid_trial_is_replaced_and_the_trial_resumes_from_its_checkpoint(
    image: str, tmp_path: Path
) -> None:
    epochs = 4
    manifest = variant(
        tmp_path, "checkpoint", TUNE_NUM_SAMPLES="1", TUNE_NUM_EPOCHS=str(epochs), **CI_SIZE
    )
    run = Run(manifest, tmp_path / "run")

    # At least two epochs are left to train when the worker is killed (~0.5 s after this
    # holds): the trial cannot finish in between.
    def mid_trial_with_a_checkpoint() -> bool:
        trials = tune_files.trial_dirs(experiment(run, "checkpoint"))
        seen = [tune_files.reported_epochs(t) for t in trials]
        return (
            bool(seen and seen[0])
            and 1 <= seen[0][-1] < epochs - 1
            and tune_files.has_checkpoint(trials[0])
        )

    wait_until(mid_trial_with_a_checkpoint, run)
    lost = run.delete_pod("worker")
    outcome = run.wait()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    # KubeRay replaced the pod under a new name (reconcilePods: one pod fewer than replicas)
    # and the trial ran on, in the same attempt, from its last checkpoint.
    assert outcome["attempts"] == 1 and outcome["workers_gone"] == [lost], outcome
    assert outcome["workers_created"] == 2 and outcome["ray_container_restarts"] == 0, outcome
    after = run.log.read_text().split(f"worker pod {lost} is gone")[1]
    assert re.search(r"pod \S+-worker-\w+ scheduled", after), run.explain()
    summary = json.loads((experiment(run, "checkpoint") / "results.json").read_text())
    assert summary["counts"] == {"completed": 1, "early_stopped": 0, "errored": 0}
    (trial,) = summary["trials"]
    assert trial["metrics"]["start_epoch"] >= 1, trial  # from its checkpoint, not from 0
    assert len(list(experiment(run, "checkpoint").glob("train_trial_*/error.txt"))) == 1


def _leftovers(run: Run) -> list[str]:
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


def test_a_failing_job_is_retried_on_a_new_cluster_then_fails_and_each_attempts_log_stays(
    image: str, tmp_path: Path
) -> None:
    # Every attempt's Ray job FAILS once connected: GPU trials of a model no node has (kind's
    # workers declare T4s), without waiting for one (exit 2, one error line, after the log
    # is opened).
    manifest = variant(
        tmp_path,
        "baseline",
        {"backoffLimit": 1},
        ACCELERATOR="gpu",
        ACCELERATOR_TYPE="A10G",
        GPU_WAIT_S="0",
    )
    run = Run(manifest, tmp_path / "run")
    outcome = run.wait()
    assert outcome.get("status") == "FAILED", run.explain()
    assert outcome["jobDeploymentStatus"] == "Failed" and outcome["reason"] == "AppFailed"
    assert outcome["attempts"] == 2 and outcome["failed"] == 2, outcome
    log = run.log.read_text()
    clusters = {
        line.split("cluster ")[1].rstrip(")")
        for line in log.splitlines()
        if "Initializing (cluster" in line
    }
    assert len(clusters) == 2, "each attempt gets a new cluster"
    assert "attempt 1: Retrying jobStatus=FAILED failed=1" in log
    kept = sorted(p.name for p in Path(outcome["logs"]).glob("attempt-*"))
    assert kept == ["attempt-1", "attempt-2"]
    # The submitter pod is <rayjob>-<5 characters>; the cluster's pods have longer names.
    submitter_logs = "".join(
        p.read_text() for p in Path(outcome["logs"]).glob("attempt-1/ray-tune-baseline-?????.log")
    )
    reason = "error: ACCELERATOR=gpu but no node offers accelerator_type:A10G"
    assert reason in submitter_logs
    assert _leftovers(run) == [], "the run removes every container and network it made"
    # Both clusters are gone; each attempt's driver log is on the volume, named after the
    # attempt's Ray job id, and `make logs` prints the first (failed) one.
    job_ids = re.findall(r"submitter pod \S+ \(job id (\S+)\)", log)
    attempts_dir = run.volume / "baseline.logs"
    logs = sorted(attempts_dir.glob("*.log"))
    assert [p.stem.split("_", 1)[1] for p in logs] == list(dict.fromkeys(job_ids)), logs
    for path in logs:
        assert reason in path.read_text(), path
    proc = subprocess.run(
        ["make", "-s", "logs", "STAGE=baseline", "ATTEMPT=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"STORAGE_PATH": str(run.volume)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == logs[0].read_text() and reason in proc.stdout
    assert proc.stderr.count(", exit 2") == 2, proc.stderr  # both attempts listed


def test_a_deadline_reached_while_the_cluster_starts_ends_the_rayjob_without_a_retry(
    image: str, tmp_path: Path
) -> None:
    manifest = variant(tmp_path, "tune", {"activeDeadlineSeconds": 20, "backoffLimit": 2})
    run = Run(manifest, tmp_path / "run")
    outcome = run.wait()
    assert outcome["jobDeploymentStatus"] == "Failed", run.explain()
    assert outcome["reason"] == "DeadlineExceeded" and outcome["attempts"] == 1, outcome
    assert _leftovers(run) == []


def test_a_worker_smaller_than_a_trial_errors_it_for_memory_not_the_run(
    image: str, tmp_path: Path
) -> None:
    # The case: a 1 GiB worker pod, the whole training split, and a reservation
    # (TRIAL_MEMORY_MIB=256) that lets Ray place the trial there anyway. Ray's memory monitor
    # (or the pod's limit) kills the trial; the job must end with the trial errored for
    # memory, in results.json and one stderr line, and exit 1: not a driver traceback.
    def small_worker(doc: dict[str, Any]) -> None:
        group = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
        limits = {"cpu": "1", "memory": "1Gi"}
        group["template"]["spec"]["containers"][0]["resources"] = {
            "requests": limits,
            "limits": limits,
        }

    manifest = variant(
        tmp_path,
        "tune",
        {"backoffLimit": 0},
        TRAIN_LIMIT="60000",
        TUNE_NUM_SAMPLES="1",
        TUNE_NUM_EPOCHS="1",
        TRIAL_MEMORY_MIB="256",
    )
    doc = yaml.safe_load(manifest.read_text())
    small_worker(doc)
    manifest.write_text(yaml.safe_dump(doc))
    run = Run(manifest, tmp_path / "run")
    outcome = run.wait()
    assert outcome.get("status") == "FAILED", run.explain()
    assert outcome["attempts"] == 1 and outcome["reason"] == "AppFailed", outcome
    summary = json.loads((experiment(run, "tune") / "results.json").read_text())
    (trial,) = summary["trials"]
    assert trial["status"] == "errored", trial
    # Whichever kills first: Ray's memory monitor (it samples every 250 ms) or, when the
    # trial's memory grows faster, the kernel at the container's limit. Both are the
    # project's memory messages, with what to raise.
    assert trial["error"].startswith(("killed by Ray's memory monitor", OOM_KILLED)), trial
    submitter = "".join(
        p.read_text(errors="replace")
        for p in Path(outcome["logs"]).rglob("ray-tune-tune-?????.log")
    )
    assert f"error: trial {trial['trial_id']} errored: " in submitter, submitter[-3000:]
    assert "TRIAL_MEMORY_MIB" in submitter
    # Not Tune's own ending for this (ray 2.60 raises out of fit()): the driver ran to its
    # end, its summary and the errored count printed. (Tune's log of the trial's death may
    # hold a traceback: it prints one for an actor that died, the kernel's kill; not for the
    # memory monitor's.)
    assert "Caught unexpected exception" not in submitter
    assert "[tune] summary: " in submitter and "error: 1 of 1 trials errored" in submitter


# --- The variant users apply: the default cloud's T4 manifests, autoscaling from zero ---------

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


def test_asha_on_the_t4_manifest_scales_from_zero_and_back(image: str, tmp_path: Path) -> None:
    (doc,) = [yaml.safe_load((K8S / "rayjob-asha.yaml").read_text())]
    group = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 0 and group["minReplicas"] == 0  # the committed manifest
    run = cloud_run(
        K8S / "rayjob-asha.yaml",
        tmp_path / "run",
        image,
        *("--idle-timeout-s", "10", "--node-idle-s", "5"),
        # Once the job ends every worker is idle by construction (no trial left, the GPU
        # request withdrawn) while KubeRay keeps the cluster for ttlSecondsAfterFinished:
        # the runner keeps it until the autoscaler has given every worker back, at most
        # 120 s (idle timeout 10 s + the autoscaler's loop + the runner's poll: ~20 s).
        *("--linger-s", "120"),
        TUNE_NUM_SAMPLES="3",
    )
    outcome = run.wait()
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    # Ray's autoscaler asked for T4 workers through the API stand-in, never more than the
    # group allows, and the node pool grew from zero for them.
    assert outcome["refused_api_calls"] == [], outcome
    assert 1 <= outcome["max_workers"] <= group["maxReplicas"]
    assert outcome["nodes_added"] >= 1 and outcome["scale_up_s"] is not None
    assert "pod triggered scale-up of pool t4" in log
    assert "autoscaler patched the RayCluster" in log and "/replicas" in log
    # The driver waited for the first T4 (GPU_WAIT_S) while the autoscaler added it.
    driver_logs = "".join(
        p.read_text(errors="replace") for p in (run.work / "ray-logs-1").rglob("job-driver-*.log")
    )
    assert "no T4 GPU yet; asking the autoscaler for one" in driver_logs
    # And back to zero: each idle worker was given back, the autoscaler naming it in
    # workersToDelete and KubeRay deleting its pod (during the job or in the TTL window).
    assert outcome["workers_left"] == 0, run.explain()
    assert outcome["workers_deleted"] == outcome["workers_created"] >= 1, outcome
    assert "(workersToDelete)" in log
    summary = json.loads((run.volume / "asha" / "results.json").read_text())
    assert len(summary["trials"]) == 3 and summary["counts"]["errored"] == 0
    for trial in summary["trials"]:
        assert trial["metrics"]["assigned_gpus"] >= 1.0 and trial["metrics"]["on_cuda"] == 0.0
    # What the run cost, measured: the T4 worker pods' and the head's node-hours from Ray's
    # node table, priced at the values file's prices the manifest handed the driver.
    compute = summary["compute"]
    hours = compute["node_hours"]
    assert hours["T4"] > 0 and hours["head"] > 0 and compute["attempts"] == 1, compute
    assert compute["accelerator_hours"]["T4"] > 0
    prices = yaml.safe_load((REPO / "k8s" / "values" / "gke.yaml").read_text())["prices"]
    cost = compute["cost"]
    assert cost["source"] == prices["source"] and cost["gpu_node_hours"] == hours["T4"]
    expected = hours["T4"] * prices["t4_node"]["on_demand"]
    expected += hours["head"] * prices["head_node"]["on_demand"]
    assert cost["on_demand_usd"] == pytest.approx(expected, abs=1e-3)
    (record,) = (run.volume / "asha.logs").glob("*.json")
    assert json.loads(record.read_text())["exit_code"] == 0


def test_the_smoke_rayjob_proves_the_t4_path_and_skips_what_the_runner_cannot_check(
    image: str, tmp_path: Path
) -> None:
    """`make e2e-podman STAGE=smoke MANIFEST=k8s/rayjob-smoke.yaml`: the default cloud's smoke
    RayJob as committed. A T4 worker from zero, the volume and the GCS by Service name are
    real here; CUDA and the NetworkPolicy are not (podman_rayjob.RUNNER_CANNOT): skipped with
    the runner's reasons, never ok."""
    run = Run(
        K8S / "rayjob-smoke.yaml",
        tmp_path / "run",
        *("--image", image, "--idle-timeout-s", "10", "--node-idle-s", "5"),
        values="gke",
    )
    outcome = run.wait()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    assert outcome["attempts"] == 1 and outcome["nodes_added"] >= 1, outcome
    report = json.loads((run.volume / "smoke" / "smoke.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert {n: c["status"] for n, c in checks.items()} == {
        "gpu_worker": "ok",
        "cuda": "skipped",
        "volume": "ok",
        "gcs_service": "ok",
        "network_policy": "skipped",
    }, report
    assert "scaled up from zero" in checks["gpu_worker"]["detail"]
    assert checks["volume"]["detail"].startswith(f"written by uid {RAY_UID} on the worker")
    assert "-head-svc" in checks["gcs_service"]["detail"]
    assert "does not enforce NetworkPolicies" in checks["network_policy"]["detail"]
    assert report["ok"] is True and report["timeline"]["first_result"] > 0
    driver_logs = "".join(
        p.read_text(errors="replace") for p in (run.work / "ray-logs-1").rglob("job-driver-*.log")
    )
    assert "gcs_service     ok" in driver_logs and "cuda            skipped" in driver_logs


def test_a_head_that_fits_no_node_fails_by_the_pre_running_deadline(
    image: str, tmp_path: Path
) -> None:
    def too_big(doc: dict[str, Any]) -> None:
        head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        head["containers"][0]["resources"] = {
            "requests": {"cpu": "16", "memory": "64Gi"},
            "limits": {"cpu": "16", "memory": "64Gi"},
        }
        doc["spec"] |= {"preRunningDeadlineSeconds": 20, "backoffLimit": 0}

    run = cloud_run(cloud_variant(tmp_path, too_big), tmp_path / "run", image)
    outcome = run.wait()
    assert outcome["reason"] == "PreRunningDeadlineExceeded", run.explain()
    assert outcome["attempts"] == 1 and outcome["seconds"] < 120  # activeDeadline: 9000 s
    log = run.log.read_text()
    assert "Pending: 0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory" in log
    assert outcome["nodes_added"] == 0
    assert _leftovers(run) == []


def wrong_label(doc: dict[str, Any]) -> None:
    """A T4 selector no pool's nodes carry (an L4 label)."""
    group = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["template"]["spec"]["nodeSelector"] = {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-l4"
    }


# Two ways no T4 node ever comes: a selector that matches no pool, and a pool that has no
# capacity for the whole run (a permanent stockout).
NO_NODE = {
    "selector": (wrong_label, (), "didn't match Pod's node affinity/selector"),
    "stockout": (lambda doc: None, ("--stockout-s", "inf"), "(a stockout), for ever"),
}


@pytest.mark.parametrize("cause", NO_NODE)
def test_a_t4_node_that_never_comes_fails_the_gpu_wait(
    cause: str, image: str, tmp_path: Path
) -> None:
    # KubeRay calls a cluster with zero workers Ready: the job starts, the autoscaler asks
    # for a worker, the worker's pod stays Pending (Ray's autoscaler v1 sets no timeout on
    # it), and the driver's GPU_WAIT_S ends the job, long before activeDeadlineSeconds.
    change, flags, said = NO_NODE[cause]

    def no_retry(doc: dict[str, Any]) -> None:
        change(doc)
        doc["spec"]["backoffLimit"] = 0

    manifest = cloud_variant(tmp_path, no_retry)
    run = cloud_run(manifest, tmp_path / "run", image, *flags, GPU_WAIT_S="30")
    outcome = run.wait()
    assert outcome.get("status") == "FAILED" and outcome["reason"] == "AppFailed", run.explain()
    assert said in run.log.read_text()
    assert outcome["nodes_added"] == 0, "no T4 node joined"
    assert (outcome["scale_ups_refused"] > 0) == (cause == "stockout"), outcome
    driver_logs = "".join(
        p.read_text(errors="replace") for p in (run.work / "ray-logs-1").rglob("job-driver-*.log")
    )
    assert "no node with accelerator_type:T4 joined within GPU_WAIT_S=30s" in driver_logs
    (doc,) = docs(manifest)
    assert outcome["seconds"] < 600 < doc["spec"]["activeDeadlineSeconds"]


# The stages a reclaim test runs: checkpoint saves every epoch of its own; asha only
# because the render says Spot (SPOT=true). asha tries lr 0.1 first, which diverges, so the
# second trial (lr 1e-3) passes ASHA's rung at epoch 2 and is in flight when the node goes.
# asha's run also starts in a stockout that lifts after a minute (a zone out of T4s): the
# worker Ray's autoscaler asked for stays Pending, saying why, and lands on the node the pool
# adds once capacity is back (autoscaler v1 keeps it; the driver waits, GPU_WAIT_S).
SPOT_STAGES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "checkpoint": ({}, ()),
    "asha": ({"TUNE_LR_POINTS": "0.1,0.001"}, ("--stockout-s", "60")),
}


def spot_run(stage: str, tmp_path: Path, image: str, *flags: str, **env: str) -> tuple[Run, Path]:
    """The default cloud's RayJob for `stage` as `spot: true` renders it (T4 workers on Spot
    nodes only, SPOT=true for the driver), on a Spot pool with GKE's reclaim terms (values
    spot_reclaim: the VM ends 30 s after the notice, pods get 15 s); the provider reclaims
    one node once the returned file exists."""
    text, spot_values = spot_render("gke", stage)
    manifest, values = tmp_path / f"rayjob-{stage}.yaml", tmp_path / "gke-spot.yaml"
    manifest.write_text(text)
    values.write_text(yaml.safe_dump(spot_values))
    reclaim_now = tmp_path / "reclaim-now"
    run = cloud_run(
        manifest,
        tmp_path / "run",
        image,
        *("--reclaim-when", str(reclaim_now)),
        *flags,
        values=values,
        **env,
    )
    return run, reclaim_now


@pytest.mark.parametrize("stage", SPOT_STAGES)
def test_a_reclaimed_spot_node_is_replaced_and_its_trial_resumes_in_the_same_attempt(
    stage: str, image: str, tmp_path: Path
) -> None:
    """One trial at a time, so the one T4 node in use holds the trial in flight: once the
    first trial finished and the second reported epoch 2 or 3 of 5 with its checkpoint, the
    test freezes the worker (so the trial cannot finish during the grace period, however
    fast the machine) and the provider reclaims its node."""
    env, flags = SPOT_STAGES[stage]
    epochs = 5
    run, reclaim_now = spot_run(
        stage,
        tmp_path,
        image,
        *flags,
        TUNE_NUM_SAMPLES="2",
        TUNE_NUM_EPOCHS=str(epochs),
        TUNE_MAX_CONCURRENT="1",
        **env,
    )

    def epochs_now() -> dict[str, list[int]]:
        return trial_epochs(run, stage)

    def finished(seen: dict[str, list[int]]) -> list[str]:
        return [name for name, e in seen.items() if e == list(range(1, epochs + 1))]

    def second_trial_mid_way() -> bool:
        seen = epochs_now()
        going = [n for n, e in seen.items() if n not in finished(seen) and e and 2 <= e[-1] <= 3]
        trial = experiment(run, stage) / going[0] if len(going) == 1 else None
        return len(finished(seen)) == 1 and trial is not None and tune_files.has_checkpoint(trial)

    wait_until(second_trial_mid_way, run)
    run.podman("pause", run.container("worker"))
    before = epochs_now()  # frozen: what the reclaim hits cannot change any more
    (first,) = finished(before)
    (hit_dir,) = [n for n in before if n != first]
    assert 2 <= before[hit_dir][-1] < epochs, before
    reclaim_now.touch()
    outcome = run.wait()
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED", run.explain()
    (reclaim,) = outcome["reclaims"]
    (pod,) = reclaim["pods"]
    assert (reclaim["notice_s"], reclaim["grace_s"]) == (30, 15), reclaim
    # KubeRay deleted the Failed pod (shouldDeletePod) and replaced it under a new name, in
    # the same attempt, on a node the Spot pool added for it.
    assert outcome["attempts"] == 1 and outcome["workers_failed_deleted"] == [pod], outcome
    assert outcome["workers_created"] >= 2 and outcome["nodes_added"] >= 2, outcome
    if "--stockout-s" in flags:  # no node until the stockout lifted, then one as usual
        refused = log.index("(a stockout), for ")
        scaled_up = log.index("triggered scale-up of pool t4")
        assert refused < scaled_up < log.index("scheduled on t4-node")
        assert outcome["scale_ups_refused"] > 0, outcome
    after = log.split(f"Spot node {reclaim['node']} reclaimed")[1]
    assert f"pods {pod} Failed (Terminated)" in after and f"deleting worker pod {pod}" in after
    replaced = re.search(r"pod (\S+-worker-\w+) scheduled on (t4-node-\d+)", after)
    assert replaced and replaced.group(1) != pod and replaced.group(2) != reclaim["node"], after
    # Every trial TERMINATED; the one that finished before never reported again; the one hit
    # resumed from its last checkpoint, the epoch in flight (frozen) redone from there.
    summary = json.loads((experiment(run, stage) / "results.json").read_text())
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}, summary
    after_run = epochs_now()
    assert after_run[first] == list(range(1, epochs + 1)), after_run
    last_saved = before[hit_dir][-1]  # a checkpoint every epoch (the checkpoint stage)
    assert after_run[hit_dir] == [*before[hit_dir], *range(last_saved + 1, epochs + 1)], after_run
    (hit,) = [t for t in summary["trials"] if t["metrics"]["start_epoch"] > 0]
    assert hit["metrics"]["start_epoch"] == last_saved, hit
    assert len(list(experiment(run, stage).glob("train_trial_*/error.txt"))) == 1
    # What the reclaim cost, kept: one failure of that trial, the epoch in flight trained
    # again (none reported twice), its accelerator-hours and money at the GKE prices.
    compute = summary["compute"]
    retried = compute["retries"]
    assert [f["trial_id"] for f in retried["failures"]] == [hit["trial_id"]], retried
    assert (retried["trial_epochs_reported_twice"], retried["trial_epochs_redone"]) == (0, 1)
    assert compute["accelerator_hours_redone"]["T4"] > 0, compute
    assert compute["cost"]["redone_spot_usd"] < compute["cost"]["redone_on_demand_usd"]
    # The attempt's record on the volume keeps the T4 node that left, with Ray's reason.
    (record,) = [json.loads(p.read_text()) for p in (run.volume / f"{stage}.logs").glob("*.json")]
    (left,) = record["left"].values()
    assert left["type"] == "T4" and left["at"] > record["started"], record


def test_a_train_run_resumes_from_its_checkpoint_after_a_spot_node_is_reclaimed(
    image: str, tmp_path: Path
) -> None:
    """The train stage on Spot: one trial whose Ray Train run holds two T4 workers, one per
    node. Once the run reported epoch 2 or 3 of 5 (rank 0 checkpoints every epoch), the test
    freezes both workers (nothing trains on during the grace period, however fast the
    machine) and the provider reclaims the first T4 node; once its pod is Failed the other
    worker is thawed. The Train run goes on from its last checkpoint, on the node left and
    the one the pool adds for KubeRay's replacement pod, in the same RayJob attempt: through
    the Train controller's restart of its worker group (Train's FailureConfig: 1 +
    SPOT_RETRIES), or, where the reclaimed node also held the trial's own actor (Ray places
    it; the run measured here), through Tune's retry of the trial (1 + SPOT_RETRIES), whose
    Train run reloads its snapshot by its stable name. Either way no epoch before the
    checkpoint is trained again."""
    epochs = 5
    run, reclaim_now = spot_run(
        "train",
        tmp_path,
        image,
        TUNE_NUM_SAMPLES="1",
        TUNE_NUM_EPOCHS=str(epochs),
        TUNE_MAX_CONCURRENT="1",
    )
    train_runs = experiment(run, "train") / "ray_train"

    def mid_run_with_a_checkpoint() -> bool:
        seen = list(trial_epochs(run, "train").values())
        return (
            len(seen) == 1
            and bool(seen[0])
            and 2 <= seen[0][-1] <= epochs - 2
            and any(train_runs.glob("train-*/checkpoint_*"))
        )

    wait_until(mid_run_with_a_checkpoint, run)
    workers = run.containers("worker")
    assert len(workers) == 2, workers  # one T4 node each
    for name in workers:
        run.podman("pause", name)
    ((hit_dir, before),) = trial_epochs(run, "train").items()
    reclaim_now.touch()
    wait_until(lambda: "Failed (Terminated) after the node shutdown" in run.log.read_text(), run)
    paused = run.podman("ps", "--filter", "status=paused", "--format", "{{.Names}}").split()
    thawed = [name for name in workers if name in paused]  # the reclaimed one is stopped
    assert len(thawed) == 1, (workers, paused)
    run.podman("unpause", *thawed)
    outcome = run.wait()
    log = run.log.read_text()
    assert outcome.get("status") == "SUCCEEDED" and outcome["attempts"] == 1, run.explain()
    (reclaim,) = outcome["reclaims"]
    (pod,) = reclaim["pods"]
    assert outcome["workers_failed_deleted"] == [pod], outcome
    # Two nodes for the run, a third for the replacement of the reclaimed one.
    assert outcome["workers_created"] >= 3 and outcome["nodes_added"] >= 3, outcome
    after = log.split(f"Spot node {reclaim['node']} reclaimed")[1]
    replaced = re.search(r"pod (\S+-worker-\w+) scheduled on (t4-node-\d+)", after)
    assert replaced and replaced.group(1) != pod and replaced.group(2) != reclaim["node"], after
    # The Train run went on from its last checkpoint: the epoch in flight (frozen) trained
    # again, every earlier one kept, and the trial ended TERMINATED.
    summary = json.loads((experiment(run, "train") / "results.json").read_text())
    assert summary["counts"] == {"completed": 1, "early_stopped": 0, "errored": 0}, summary
    last_saved = before[-1]
    assert trial_epochs(run, "train")[hit_dir] == [*before, *range(last_saved + 1, epochs + 1)]
    ((trial,),) = [summary["trials"]]
    assert trial["metrics"]["start_epoch"] == last_saved, trial
    assert trial["metrics"]["world_size"] == 2, trial
