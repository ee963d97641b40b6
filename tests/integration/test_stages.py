"""Every stage end to end on a local Ray cluster with real Fashion-MNIST at CI size.

Each test runs the stage the way a user does (`python -m jobs.<stage>` or `jobs.submit`)
and asserts on what it leaves on disk: results.json, Tune's trial folders, checkpoints.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.submit import local_head
from tests.support import tune_files
from tests.support.runs import REPO, explain, load_results, run_make, run_module
from tests.support.tune_files import reported_epochs

CHANCE = 0.1  # ten balanced classes


def trial_dirs(env: dict[str, str], stage: str) -> list[Path]:
    return tune_files.trial_dirs(Path(env["STORAGE_PATH"]) / stage)


def assert_sound(summary: dict[str, Any], stage: str, trials: int) -> None:
    assert summary["stage"] == stage and len(summary["trials"]) == trials
    assert sum(summary["counts"].values()) == trials
    for trial in summary["trials"]:
        for key in ("loss", "val_loss", "val_accuracy"):
            assert math.isfinite(trial["metrics"][key]), (trial["trial_id"], key)
    assert summary["best"]["metrics"]["val_accuracy"] > 3 * CHANCE
    assert summary["wall_time_s"] > 0


def run_stage(stage: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_module(f"jobs.{stage}", list(args), env)
    assert proc.returncode == 0, explain(proc)
    return proc


def test_baseline_then_a_rerun_keeps_the_first_results(stage_env) -> None:
    proc = run_stage("baseline", stage_env)
    summary = load_results(stage_env, "baseline")
    assert_sound(summary, "baseline", 1)
    assert summary["counts"]["completed"] == 1 and summary["trials"][0]["epochs"] == 2
    assert "[baseline] epoch 2/2" in proc.stdout + proc.stderr
    assert "best trial baseline" in proc.stdout and '"lr": 0.001' in proc.stdout
    # A second run keeps the first one's outputs aside, and says where.
    again = run_stage("baseline", {**stage_env, "TUNE_NUM_EPOCHS": "1"})
    (kept,) = Path(stage_env["STORAGE_PATH"]).glob("baseline.archived-*")
    assert f"the previous run's results are kept in {kept}" in again.stdout
    assert json.loads((kept / "results.json").read_text()) == summary
    assert load_results(stage_env, "baseline")["trials"][0]["epochs"] == 1


def test_tune_random_search_then_rerun_resumes(stage_env) -> None:
    env = dict(stage_env, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="2")
    proc = run_stage("tune", env)
    summary = load_results(env, "tune")
    assert_sound(summary, "tune", 2)
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    lrs = {t["config"]["lr"] for t in summary["trials"]}
    assert len(lrs) == 2 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
    assert "rank  trial_id" in proc.stdout  # the leaderboard
    best = summary["best"]
    assert f"best trial {best['trial_id']}" in proc.stdout  # get_best_result()'s printout
    # --resume resumes the finished experiment: same trials, nothing re-trained, and it says
    # that unfinished trials of this stage would start again from epoch 1 (no checkpoints).
    before = {d.name: reported_epochs(d) for d in trial_dirs(env, "tune")}
    again = run_stage("tune", env, "--resume")
    assert "resuming" in again.stdout and "start again from epoch 1" in again.stdout
    assert {d.name: reported_epochs(d) for d in trial_dirs(env, "tune")} == before
    assert {t["trial_id"] for t in load_results(env, "tune")["trials"]} == {
        t["trial_id"] for t in summary["trials"]
    }


def test_fresh_archives_the_previous_experiment(stage_env) -> None:
    env = dict(stage_env, TUNE_NUM_SAMPLES="1", TUNE_NUM_EPOCHS="1")
    run_stage("tune", env)
    first = load_results(env, "tune")["trials"][0]["trial_id"]
    run_stage("tune", env, "--fresh")
    archived = list(Path(env["STORAGE_PATH"]).glob("tune.archived-*"))
    assert len(archived) == 1 and json.loads((archived[0] / "results.json").read_text())
    assert load_results(env, "tune")["trials"][0]["trial_id"] != first


def test_asha_stops_the_bad_trial_early(stage_env) -> None:
    # Sequential trials with a good and a diverging learning rate first: at ASHA's first
    # rung (epoch 2) the lr=0.1 trial trails the lr=1e-3 one by orders of magnitude.
    env = dict(stage_env, TUNE_NUM_SAMPLES="3", TUNE_NUM_EPOCHS="3", TUNE_MAX_CONCURRENT="1")
    proc = run_stage("asha", {**env, "TUNE_LR_POINTS": "1e-3,0.1"})
    summary = load_results(env, "asha")
    assert_sound(summary, "asha", 3)
    by_lr = {t["config"]["lr"]: t for t in summary["trials"]}
    assert by_lr[0.1]["status"] == "early_stopped" and by_lr[0.1]["epochs"] == 2
    assert by_lr[1e-3]["status"] == "completed" and by_lr[1e-3]["epochs"] == 3
    # Whatever Optuna samples for the third trial: a trial either ran all 3 epochs or was
    # stopped at ASHA's only rung within 3 epochs (epoch 2).
    for trial in summary["trials"]:
        expected = 3 if trial["status"] == "completed" else 2
        assert trial["epochs"] == expected, trial
    assert summary["counts"]["early_stopped"] >= 1 and summary["counts"]["errored"] == 0
    # The printed row: status, loss, training_iteration, epoch, config/lr.
    assert re.search(r"early_stopped\s+\S+\s+2\s+2\s+0\.1\s", proc.stdout), proc.stdout[-3000:]
    # What a person opens: one CSV row per trial, the curves, the compute ASHA saved.
    folder = Path(env["STORAGE_PATH"]) / "asha"
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert sorted(r["trial_id"] for r in rows) == sorted(t["trial_id"] for t in summary["trials"])
    assert {r["status"] for r in rows} == {t["status"] for t in summary["trials"]}
    png = folder / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    compute = summary["compute"]
    assert compute["trial_epochs"] == sum(t["epochs"] for t in summary["trials"]) < 9
    assert compute["trial_epochs_if_run_to_end"] == 9 and compute["device"] == "cpu"
    board = run_module("jobs.results", [str(folder)], env)
    assert board.stdout.splitlines()[1].split()[1] == summary["best"]["trial_id"]


def test_checkpoint_trial_failure_resumes_from_its_checkpoint(stage_env) -> None:
    env = dict(stage_env, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="3", FAIL_AT_EPOCH="2")
    output = run_stage("checkpoint", env)
    logs = output.stdout + output.stderr
    # The driver's log repeats no trial's epoch line (Ray may drop a trial's last lines
    # when the driver exits first, so completeness is checked in the trials' own logs).
    lines = Counter(re.findall(r"\[(\w+)\] epoch (\d)/3 loss=", logs))
    assert lines and set(lines.values()) == {1}, lines
    # What the trials printed, across both attempts: every epoch exactly once per trial
    # (epoch 1 in the attempt that then failed, epochs 2 and 3 in the resumed one).
    printed = "".join(
        p.read_text(errors="replace") for p in Path(env["RAY_TMPDIR"]).rglob("worker-*.out")
    )
    per_trial = Counter(re.findall(r"\[(\w+)\] epoch (\d)/3 loss=", printed))
    assert sorted(per_trial.values()) == [1] * 6, per_trial
    assert sorted({epoch for _, epoch in per_trial}) == ["1", "2", "3"]
    assert "Checkpoint successfully created" not in logs  # silenced by logger name
    summary = load_results(env, "checkpoint")
    assert_sound(summary, "checkpoint", 2)
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    for trial in summary["trials"]:
        assert trial["metrics"]["start_epoch"] == 1  # resumed from epoch 1's checkpoint
    for folder in trial_dirs(env, "checkpoint"):
        assert (folder / "error.txt").exists()  # it did fail once
        assert reported_epochs(folder)[-1] == 3
        # num_to_keep=1: the best epoch's checkpoint, plus the latest if that is another one.
        kept = sorted(p.name for p in folder.glob("checkpoint_*"))
        assert kept[-1] == "checkpoint_000002" and len(kept) <= 2, kept
    # The best trial's checkpoint, exported and evaluated again from scratch.
    model = Path(env["STORAGE_PATH"]) / "checkpoint" / "best_model.pt"
    proc = run_module("jobs.evaluate", [str(model)], env)
    assert proc.returncode == 0, explain(proc)
    accuracy = float(re.search(r"^accuracy: (0\.\d{4})$", proc.stdout, re.M).group(1))
    assert accuracy == pytest.approx(summary["best"]["metrics"]["val_accuracy"], abs=2e-3)


def test_fail_at_epoch_1_fails_each_trial_once_though_it_has_no_checkpoint(stage_env) -> None:
    # A trial that fails in its first epoch has no checkpoint to resume past the failure:
    # the retry must still not fail again (FailureConfig allows 2 retries; 1 is used).
    env = dict(stage_env, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="1", FAIL_AT_EPOCH="1")
    run_stage("checkpoint", env)
    summary = load_results(env, "checkpoint")
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    for trial in summary["trials"]:
        assert trial["metrics"]["start_epoch"] == 0 and trial["epochs"] == 1
    folders = trial_dirs(env, "checkpoint")
    assert len(folders) == 2 and all((f / "error.txt").exists() for f in folders)
    assert all(reported_epochs(f) == [1] for f in folders)  # failed once, then ran once
    injected = Path(env["STORAGE_PATH"]) / "checkpoint" / "injected_failures"
    assert sorted(p.name for p in injected.iterdir()) == sorted(
        t["trial_id"] for t in summary["trials"]
    )


def _memory_threshold(headroom_mib: int) -> str:
    """A RAY_memory_usage_threshold this machine passes once a trial loads: what is in use
    now (the test's own process included) plus `headroom_mib`, as a fraction of the total."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total, available = (int(info[k].split()[0]) / 1024 for k in ("MemTotal", "MemAvailable"))
    return f"{(total - available + headroom_mib) / total:.4f}"


def test_a_trial_killed_for_memory_ends_errored_with_its_reason(stage_env) -> None:
    # Ray's memory monitor, set to act once the driver, Ray and a trial's start are in use
    # (about 1 GiB): it kills the trial's actor each attempt, as a worker pod smaller than
    # a trial does. The run must end with the trial errored (after FailureConfig's 2
    # retries), its results written and one line saying why, not a driver traceback.
    env = dict(stage_env, TUNE_NUM_SAMPLES="1", TUNE_NUM_EPOCHS="1", TRIAL_MEMORY_MIB="256")
    env["RAY_memory_usage_threshold"] = _memory_threshold(600)
    proc = run_module("jobs.checkpoint", [], env)
    assert proc.returncode == 1, explain(proc)
    assert "Caught unexpected exception" not in proc.stdout + proc.stderr
    summary = load_results(env, "checkpoint")
    (trial,) = summary["trials"]
    assert trial["status"] == "errored" and trial["epochs"] == 0
    assert trial["error"].startswith("killed by Ray's memory monitor; the killed worker held")
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "error: 1 of 1 trials errored"
    assert lines[-2].startswith(f"error: trial {trial['trial_id']} errored: killed by Ray's")
    assert "it reserved 256 MiB (TRIAL_MEMORY_MIB)" in lines[-2]
    assert len(list(trial_dirs(env, "checkpoint")[0].glob("error.txt"))) == 1


def test_train_inside_tune(stage_env) -> None:
    env = dict(stage_env, TUNE_NUM_EPOCHS="2")
    logs = run_stage("train", env)
    assert "Reporting training result" not in logs.stdout + logs.stderr
    summary = load_results(env, "train")
    assert_sound(summary, "train", 2)
    assert summary["counts"]["completed"] == 2
    assert {t["metrics"]["world_size"] for t in summary["trials"]} == {2}  # 2 DDP workers
    runs = Path(env["STORAGE_PATH"]) / "train" / "ray_train"
    names = sorted(p.name for p in runs.iterdir())
    assert names == sorted(f"train-{t['trial_id']}" for t in summary["trials"])
    for name in names:
        assert len([p for p in (runs / name).glob("checkpoint_*") if p.is_dir()]) == 1


def test_checkpoint_resumes_after_the_driver_is_killed(stage_env) -> None:
    epochs = 3
    env = {
        **stage_env,
        "TUNE_NUM_SAMPLES": "3",
        "TUNE_NUM_EPOCHS": str(epochs),
        "TUNE_MAX_CONCURRENT": "1",
    }
    with local_head(num_cpus=2) as head:
        env["RAY_ADDRESS"] = head.gcs_address
        cmd = [sys.executable, "-m", "jobs.checkpoint"]
        with open(Path(env["STORAGE_PATH"]).parent / "driver1.log", "w") as log:
            driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)

            folder = Path(env["STORAGE_PATH"]) / "checkpoint"

            def one_done_and_snapshotted_one_started() -> bool:
                seen = tune_files.trial_epochs(folder)
                done = [n for n, e in seen.items() if e and e[-1] == epochs]
                started = [n for n, e in seen.items() if e and e[-1] < epochs]
                statuses = tune_files.snapshot_statuses(folder)
                return bool(done and started) and all(statuses.get(n) == "TERMINATED" for n in done)

            try:
                tune_files.wait_for(
                    one_done_and_snapshotted_one_started,
                    "a finished trial recorded in the snapshot and one in flight",
                    timeout_s=300,
                    alive=lambda: driver.poll() is None,
                )
            finally:
                driver.send_signal(signal.SIGKILL)
                driver.wait()
        before = {d.name: reported_epochs(d) for d in trial_dirs(env, "checkpoint")}
        finished = {name for name, e in before.items() if e[-1] == epochs}
        proc = run_stage("checkpoint", env)
    assert "resuming" in proc.stdout
    summary = load_results(env, "checkpoint")
    assert summary["counts"] == {"completed": 3, "early_stopped": 0, "errored": 0}
    after = {d.name: reported_epochs(d) for d in trial_dirs(env, "checkpoint")}
    assert len(after) == 3
    for name in finished:  # finished trials are not run again
        assert after[name] == before[name]
    for name, reported in after.items():
        assert reported[-1] == epochs
        # at most the epoch in flight at the kill is trained twice
        assert len(reported) <= epochs + 1, (name, reported)
    in_flight = [n for n in before if n not in finished]
    assert in_flight and all(after[n][: len(before[n])] == before[n] for n in in_flight)


def _head_processes(temp_dir: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if temp_dir.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _submit_env(stage_env: dict[str, str]) -> dict[str, str]:
    env = dict(stage_env)
    env.pop("RAY_AUTH_MODE")  # submit turns token authentication on for its head
    return env


def test_make_submit_runs_the_stage_through_the_jobs_api(stage_env) -> None:
    env = {**_submit_env(stage_env), "TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1"}
    # As a user types it; the settings travel in the environment, as in the README.
    proc = run_make(["submit", "STAGE=tune"], env)
    assert proc.returncode == 0, explain(proc)
    assert re.search(r"job tune-\w+ SUCCEEDED", proc.stdout)
    assert load_results(env, "tune")["counts"]["completed"] == 1
    temp_dir = re.search(r"temp dir (\S+)\)", proc.stdout).group(1)
    assert not _head_processes(temp_dir)  # the head it started is gone
    assert not os.path.exists(temp_dir)


def test_submit_exit_status_follows_a_failed_job(stage_env) -> None:
    # No FailureConfig in the tune stage: the injected failure errors the trial.
    env = {
        **_submit_env(stage_env),
        "TUNE_NUM_SAMPLES": "1",
        "TUNE_NUM_EPOCHS": "1",
        "FAIL_AT_EPOCH": "1",
    }
    proc = run_module("jobs.submit", ["tune"], env)
    assert proc.returncode == 1, explain(proc)
    assert re.search(r"job tune-\w+ FAILED", proc.stdout)
    assert load_results(env, "tune")["counts"]["errored"] == 1
    # FAIL_AT_EPOCH fails a trial once: resumed (errored trials restart), it completes.
    again = run_module("jobs.tune", ["--resume"], env)
    assert again.returncode == 0, explain(again)
    assert load_results(env, "tune")["counts"] == {
        "completed": 1,
        "early_stopped": 0,
        "errored": 0,
    }


def test_checkpoint_stopper_ends_everything_and_ranks_on_val_accuracy(stage_env) -> None:
    # The walkthrough's Stopper with a threshold every trial passes at once: after the first
    # reported epoch the whole experiment stops. Ranked on a maximised metric.
    env = dict(stage_env, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="3", TUNE_MAX_CONCURRENT="1")
    proc = run_stage("checkpoint", {**env, "TUNE_METRIC": "val_accuracy", "STOP_ALL_AT": "0.01"})
    summary = load_results(env, "checkpoint")
    assert summary["mode"] == "max"
    ran = [t for t in summary["trials"] if t["epochs"] > 0]
    assert ran and all(t["epochs"] == 1 for t in ran), summary["trials"]
    assert summary["counts"]["completed"] == 0
    best = max(ran, key=lambda t: t["metrics"]["val_accuracy"])
    assert summary["best"]["trial_id"] == best["trial_id"]
    assert "ranked on val_accuracy (max)" in proc.stdout


def test_checkpoint_per_trial_time_limit_stops_each_trial(stage_env) -> None:
    # Any epoch takes longer than 0.1 s: every trial stops after its first.
    env = dict(stage_env, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="3", TRIAL_TIME_LIMIT_S="0.1")
    run_stage("checkpoint", env)
    summary = load_results(env, "checkpoint")
    assert [t["epochs"] for t in summary["trials"]] == [1, 1]
    assert summary["counts"] == {"completed": 0, "early_stopped": 2, "errored": 0}


def test_checkpoint_time_budget_ends_the_experiment(stage_env) -> None:
    # One trial at a time, 4 of 3 epochs each, in a 1 s budget: a trial's start alone
    # outlasts it, so Tune ends the experiment long before 12 trial-epochs. Whether a trial
    # reported anything by then depends on the machine: exit 0 (some result) or 1 (none,
    # said in one line).
    env = dict(stage_env, TUNE_NUM_SAMPLES="4", TUNE_NUM_EPOCHS="3")
    env.update(TUNE_MAX_CONCURRENT="1", TIME_BUDGET_S="1")
    proc = run_module("jobs.checkpoint", [], env)
    assert proc.returncode in (0, 1), explain(proc)
    if proc.returncode == 1:
        assert proc.stderr.splitlines()[-1].startswith("error: no trial reported val_loss")
    summary = load_results(env, "checkpoint")
    assert summary["compute"]["trial_epochs"] < 12
    assert summary["counts"]["completed"] < 4
