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
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs.submit import local_head
from tests.support.runs import REPO, explain, load_results, run_module

CHANCE = 0.1  # ten balanced classes


def trial_dirs(env: dict[str, str], stage: str) -> list[Path]:
    return sorted(
        p
        for p in (Path(env["STORAGE_PATH"]) / stage).iterdir()
        if p.is_dir() and p.name.startswith(("train_trial_", "train_driver_"))
    )


def reported_epochs(trial_dir: Path) -> list[int]:
    """The `epoch` of every result Tune recorded for a trial, in order."""
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]


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


def test_baseline(stage_env) -> None:
    proc = run_stage("baseline", stage_env)
    summary = load_results(stage_env, "baseline")
    assert_sound(summary, "baseline", 1)
    assert summary["counts"]["completed"] == 1 and summary["trials"][0]["epochs"] == 2
    assert "[baseline] epoch 2/2" in proc.stdout + proc.stderr


def test_tune_random_search_then_rerun_resumes(stage_env) -> None:
    env = {**stage_env, "TUNE_NUM_SAMPLES": "2", "TUNE_NUM_EPOCHS": "2"}
    proc = run_stage("tune", env)
    summary = load_results(env, "tune")
    assert_sound(summary, "tune", 2)
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    lrs = {t["config"]["lr"] for t in summary["trials"]}
    assert len(lrs) == 2 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
    assert "rank  trial_id" in proc.stdout  # the leaderboard
    # Running it again resumes the finished experiment: same trials, nothing re-trained.
    before = {d.name: reported_epochs(d) for d in trial_dirs(env, "tune")}
    again = run_stage("tune", env)
    assert "resuming" in again.stdout
    assert {d.name: reported_epochs(d) for d in trial_dirs(env, "tune")} == before
    assert {t["trial_id"] for t in load_results(env, "tune")["trials"]} == {
        t["trial_id"] for t in summary["trials"]
    }


def test_fresh_archives_the_previous_experiment(stage_env) -> None:
    env = {**stage_env, "TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1"}
    run_stage("tune", env)
    first = load_results(env, "tune")["trials"][0]["trial_id"]
    run_stage("tune", env, "--fresh")
    archived = list(Path(env["STORAGE_PATH"]).glob("tune.archived-*"))
    assert len(archived) == 1 and json.loads((archived[0] / "results.json").read_text())
    assert load_results(env, "tune")["trials"][0]["trial_id"] != first


def test_asha_stops_the_bad_trial_early(stage_env) -> None:
    # Sequential trials with a good and a diverging learning rate first: at ASHA's first
    # rung (epoch 2) the lr=0.1 trial trails the lr=1e-3 one by orders of magnitude.
    env = {
        **stage_env,
        "TUNE_NUM_SAMPLES": "3",
        "TUNE_NUM_EPOCHS": "3",
        "TUNE_MAX_CONCURRENT": "1",
        "TUNE_LR_POINTS": "1e-3,0.1",
    }
    proc = run_stage("asha", env)
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
    env = {**stage_env, "TUNE_NUM_SAMPLES": "2", "TUNE_NUM_EPOCHS": "3", "FAIL_AT_EPOCH": "2"}
    output = run_stage("checkpoint", env)
    logs = output.stdout + output.stderr
    # One line per trial per epoch, never repeated (Ray may drop a trial's last lines when
    # the driver exits first, so this does not insist on all of them).
    lines = Counter(re.findall(r"\[(\w+)\] epoch (\d)/3 loss=", logs))
    assert lines and set(lines.values()) == {1}, lines
    assert "Checkpoint successfully created" not in logs  # silenced by logger name
    summary = load_results(env, "checkpoint")
    assert_sound(summary, "checkpoint", 2)
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    for trial in summary["trials"]:
        assert trial["metrics"]["start_epoch"] == 1  # resumed from epoch 1's checkpoint
    for folder in trial_dirs(env, "checkpoint"):
        assert (folder / "error.txt").exists()  # it did fail once
        assert reported_epochs(folder)[-1] == 3
        assert len(list(folder.glob("checkpoint_*"))) == 1  # num_to_keep=1
    # The best trial's checkpoint, exported and evaluated again from scratch.
    model = Path(env["STORAGE_PATH"]) / "checkpoint" / "best_model.pt"
    proc = run_module("jobs.evaluate", [str(model)], env)
    assert proc.returncode == 0, explain(proc)
    accuracy = float(re.search(r"^accuracy: (0\.\d{4})$", proc.stdout, re.M).group(1))
    assert accuracy == pytest.approx(summary["best"]["metrics"]["val_accuracy"], abs=2e-3)


def test_train_inside_tune(stage_env) -> None:
    env = {**stage_env, "TUNE_NUM_EPOCHS": "2"}
    logs = run_stage("train", env)
    assert "Reporting training result" not in logs.stdout + logs.stderr
    summary = load_results(env, "train")
    assert_sound(summary, "train", 2)
    assert summary["counts"]["completed"] == 2
    runs = Path(env["STORAGE_PATH"]) / "train" / "ray_train"
    names = sorted(p.name for p in runs.iterdir())
    assert names == sorted(f"train-{t['trial_id']}" for t in summary["trials"])
    for name in names:
        assert len([p for p in (runs / name).glob("checkpoint_*") if p.is_dir()]) == 1


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


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

            def one_done_one_started() -> bool:
                if not (Path(env["STORAGE_PATH"]) / "checkpoint").exists():
                    return False
                done = [reported_epochs(d) for d in trial_dirs(env, "checkpoint")]
                return any(e and e[-1] == epochs for e in done) and any(
                    e and e[-1] < epochs for e in done
                )

            try:
                _wait_for(one_done_one_started, 300, "one finished trial and one in flight")
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


def test_submit_runs_the_stage_through_the_jobs_api(stage_env) -> None:
    env = {**_submit_env(stage_env), "TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1"}
    proc = run_module("jobs.submit", ["tune"], env)
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
