"""The cluster path, executed: every kind RayJob run by tests/support/runner/ in
containers of the image built from image/Dockerfile, with KubeRay's commands, env, limits
and retries; a head lost mid-run and a worker lost mid-trial.

Needs podman (runc, debootstrap for the stand-in base; .ci/run installs them); skips with
the reason where it is missing. The image is built first (`make image-offline`, cached)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import registry
from jobs.core.records import OOM_KILLED
from tests.support import tune_files
from tests.support.podman_run import (
    KIND,
    Run,
    assert_ran_as_the_pods_declare,
    experiment,
    leftovers,
    trial_epochs,
    variant,
    wait_until,
)
from tests.support.runs import CI_SIZE, REPO

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
    assert leftovers(run) == [], "the run removes every container and network it made"
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
    assert leftovers(run) == []


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
