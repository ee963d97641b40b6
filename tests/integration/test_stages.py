"""Every stage end to end on a local Ray cluster with real Fashion-MNIST at CI size.

Each test runs the stage the way a user does (`python -m jobs.<stage>` or `jobs.submit`)
and asserts on what it leaves on disk: results.json, Tune's trial folders, checkpoints.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.bench import browser
from jobs.bench.memory import descendants, process_title
from jobs.core.localcluster import LocalCluster
from jobs.submit import local_head
from tests.support import tune_files
from tests.support.runs import REPO, explain, load_results, run_make, run_module
from tests.support.tune_files import reported_epochs

CHANCE = 0.1  # ten balanced classes


@pytest.fixture(scope="module")
def head() -> Iterator[LocalCluster]:
    """One Ray head (per pytest process: each xdist worker has its own) for the tests that
    only need a cluster to run on: a stage pointed at it (RAY_ADDRESS) connects instead of
    starting and stopping its own. The tests that need their own head keep it: a private
    head's start and end as a user runs it, Ray settings read when the raylet starts, the
    trial processes under the driver. Module-scoped: this module's tests are handed out
    before any other heavy test (tests/conftest.py), and an idle head is not free: its
    dashboard, agents, log monitor and a Train run's leftover coordinator actor took ~10% of
    a core for the rest of a session (two heads: ~400 core-seconds of `make test`)."""
    with local_head(num_cpus=2) as cluster:
        yield cluster


@pytest.fixture
def on_head(stage_env: dict[str, str], head: LocalCluster) -> dict[str, str]:
    """stage_env, with the shared Ray head as the stage's cluster."""
    return {**stage_env, "RAY_ADDRESS": head.gcs_address}


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


def test_tune_random_search_then_resume_restarts_the_failed_trials_then_fresh_archives(
    on_head,
) -> None:
    # Each trial raises once at epoch 2 (FAIL_AT_EPOCH); this stage has no FailureConfig, so
    # the first run ends with both trials errored after one epoch (exit 1).
    env = dict(on_head, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="2", FAIL_AT_EPOCH="2")
    first = run_module("jobs.tune", [], env)
    assert first.returncode == 1, explain(first)
    failed = load_results(env, "tune")
    assert failed["counts"] == {"completed": 0, "early_stopped": 0, "errored": 2}
    assert [t["epochs"] for t in failed["trials"]] == [1, 1]
    # The failed attempt leaves its report, which names the failure, and the index.
    storage = Path(env["STORAGE_PATH"])
    report = (storage / "tune" / "report.html").read_text()
    assert "failed: exit 1: error: 2 of 2 trials errored" in report
    assert "injected failure at epoch 2" in report  # each errored trial's line
    assert 'data-run="tune"' in (storage / "index.html").read_text()
    # --resume restarts them (Tuner.restore(restart_errored=True)); without checkpoints in
    # this stage they start again from epoch 1, get past epoch 2 this time and complete.
    proc = run_stage("tune", env, "--resume")
    assert "resuming" in proc.stdout and "start again from epoch 1" in proc.stdout
    summary = load_results(env, "tune")
    assert_sound(summary, "tune", 2)
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    configs = sorted(json.dumps(t["config"], sort_keys=True) for t in summary["trials"])
    assert configs == sorted(json.dumps(t["config"], sort_keys=True) for t in failed["trials"])
    for trial in summary["trials"]:
        assert trial["epochs"] == 2 and trial["metrics"]["start_epoch"] == 0, trial
        assert 1e-4 <= trial["config"]["lr"] <= 1e-1
    restarted = [d for d in trial_dirs(env, "tune") if reported_epochs(d) == [1, 2]]
    assert len(restarted) == 2  # epoch 1 trained again, then epoch 2
    assert "rank  trial_id" in proc.stdout  # the leaderboard
    best = summary["best"]
    assert f"best trial {best['trial_id']}" in proc.stdout  # get_best_result()'s printout
    # --fresh archives that experiment, whole, and starts a new one (new trial ids).
    again = {**on_head, "TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1"}  # no failure
    run_stage("tune", again, "--fresh")
    (archived,) = Path(env["STORAGE_PATH"]).glob("tune.archived-*")
    assert json.loads((archived / "results.json").read_text()) == summary
    (fresh,) = load_results(env, "tune")["trials"]
    assert fresh["trial_id"] not in {t["trial_id"] for t in summary["trials"]}
    # The index lists both runs, the archived one too; the new report compares them.
    index = (storage / "index.html").read_text()
    assert f'data-run="{archived.name}"' in index and 'data-run="tune"' in index
    assert (
        f"Against the run before ({archived.name})"
        in (storage / "tune" / "report.html").read_text()
    )
    # make compare: the current run against the archived one, both sides and the difference.
    compared = run_module("jobs.compare", ["tune"], env)
    assert compared.returncode == 0, explain(compared)
    head, *lines = compared.stdout.splitlines()
    assert head.split() == ["tune", archived.name, "difference"]
    by_name = {line.split("  ")[0]: line for line in lines}
    assert by_name["trials"].split()[1:4] == ["1", "2", "-1"]
    best_new, best_old = fresh["metrics"]["val_loss"], summary["best"]["metrics"]["val_loss"]
    assert f"{best_new:.4g}" in by_name["best val_loss (min)"]
    assert f"{best_old:.4g}" in by_name["best val_loss (min)"]


def test_asha_stops_the_bad_trial_early(on_head) -> None:
    # Sequential trials with a good and a diverging learning rate first: at ASHA's first
    # rung (epoch 2) the lr=0.1 trial trails the lr=1e-3 one by orders of magnitude.
    env = dict(on_head, TUNE_NUM_SAMPLES="3", TUNE_NUM_EPOCHS="3", TUNE_MAX_CONCURRENT="1")
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
    # The best trial, worked out from Tune's own files: the lowest val_loss last reported.
    last = tune_files.last_results(folder)
    assert sorted(last) == sorted(t["trial_id"] for t in summary["trials"])
    expected = min(last, key=lambda trial_id: last[trial_id]["val_loss"])
    assert summary["best"]["trial_id"] == expected
    board = run_module("jobs.results", [str(folder)], env)
    assert board.stdout.splitlines()[1].split()[1] == expected
    # WARM_START: a fresh search that starts from this run. Its Optuna study (the searcher
    # state Tune saves) holds this run's trials as evaluated: completed ones COMPLETE, with
    # their last val_loss; the one ASHA stopped PRUNED, with its val_loss per epoch.
    warm = run_stage("asha", {**env, "TUNE_NUM_SAMPLES": "1", "WARM_START": str(folder)}, "--fresh")
    assert "WARM_START: the search starts from 3 trials" in warm.stdout
    (state,) = (Path(env["STORAGE_PATH"]) / "asha").glob("searcher-state-*.pkl")
    study = pickle.loads(state.read_bytes())["_ot_study"]
    earlier = {round(t.params["lr"], 12): t for t in study.trials[:3]}
    for trial in summary["trials"]:
        seen = earlier[round(trial["config"]["lr"], 12)]
        assert seen.value == pytest.approx(trial["metrics"]["val_loss"])
        if trial["status"] == "completed":
            assert seen.state.name == "COMPLETE"
        else:
            assert seen.state.name == "PRUNED" and len(seen.intermediate_values) == trial["epochs"]
    assert len(study.trials) == 4 and len(load_results(env, "asha")["trials"]) == 1
    # The first run's report (archived by --fresh with its run), opened in headless Chromium:
    # whole, offline, one row and one curve per trial.
    (archived,) = Path(env["STORAGE_PATH"]).glob("asha.archived-*")
    if browser.missing():
        pytest.skip(browser.missing())
    shot = folder.parent / "report.png"
    page = browser.open_page(archived / "report.html", screenshot=shot)
    assert page.errors == [] and page.remote == []
    ids = sorted(t["trial_id"] for t in summary["trials"])
    assert sorted(page.rows["leaderboard"]) == ids and page.rows["leaderboard"][0] == expected
    assert {f"trial-{i}" for i in ids} <= page.ids  # each trial's learning curve
    assert {"search", "timeline", "attempts", "best"} <= page.ids
    assert page.texts["status"] == "finished" and f"best trial {expected}" in page.texts["best"]
    assert not browser.blank(shot)


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
    exported = torch.load(model, weights_only=False)
    assert exported["trial_id"] == summary["best"]["trial_id"]
    proc = run_module("jobs.evaluate", [str(model)], env)
    assert proc.returncode == 0, explain(proc)
    accuracy = float(re.search(r"^accuracy: (0\.\d{4})$", proc.stdout, re.M).group(1))
    # The exported epoch's own validation accuracy (the best epoch, maybe not the last).
    assert accuracy == pytest.approx(exported["metrics"]["val_accuracy"], abs=2e-3)


def test_fail_at_epoch_1_fails_each_trial_once_though_it_has_no_checkpoint(on_head) -> None:
    # A trial that fails in its first epoch has no checkpoint to resume past the failure:
    # the retry must still not fail again (FailureConfig allows 2 retries; 1 is used).
    env = dict(on_head, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="1", FAIL_AT_EPOCH="1")
    run_stage("checkpoint", env)
    summary = load_results(env, "checkpoint")
    assert summary["counts"] == {"completed": 2, "early_stopped": 0, "errored": 0}
    for trial in summary["trials"]:
        assert trial["metrics"]["start_epoch"] == 0 and trial["epochs"] == 1
    folders = trial_dirs(env, "checkpoint")
    assert len(folders) == 2 and all((f / "error.txt").exists() for f in folders)
    assert all(reported_epochs(f) == [1] for f in folders)  # failed once, then ran once
    injected = Path(env["STORAGE_PATH"]) / "checkpoint" / "injected_failures"
    assert len([p for p in injected.iterdir() if p.name.startswith("config-")]) == 2


def test_a_trial_killed_for_memory_ends_errored_with_its_reason(stage_env) -> None:
    # Ray's memory monitor with a threshold every machine is above (0.1% of its memory), so
    # whatever else runs beside this test: it kills the trial's actor each attempt, as a
    # worker pod smaller than a trial does. The run must end with the trial errored (after
    # FailureConfig's 2 retries), its results written and one line saying why, not a driver
    # traceback.
    env = dict(stage_env, TUNE_NUM_SAMPLES="1", TUNE_NUM_EPOCHS="1", TRIAL_MEMORY_MIB="256")
    env["RAY_memory_usage_threshold"] = "0.001"
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


def test_train_inside_tune(on_head) -> None:
    env = dict(on_head, TUNE_NUM_EPOCHS="2")
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


def test_a_train_trial_whose_driver_dies_is_retried_by_tune_and_resumes_its_run(
    stage_env, head
) -> None:
    # The Tune trial of the train stage drives a Train run; kill that driver (as a lost
    # node would) once the run has saved epoch 1: Tune retries the trial (max_failures=1),
    # and the new driver's Train run, under the same name, resumes from that checkpoint.
    # The stage starts its own cluster beside another Ray on the machine (`head`), as under
    # make test: Train's cleaner must still free the dead run's workers (the test below).
    env = dict(stage_env, TUNE_NUM_SAMPLES="1", TUNE_NUM_EPOCHS="3")
    runs = Path(env["STORAGE_PATH"]) / "train" / "ray_train"
    log = Path(env["STORAGE_PATH"]).parent / "train.log"
    with log.open("w") as out:
        stage = subprocess.Popen(
            [sys.executable, "-m", "jobs.train"], cwd=REPO, env=env, stdout=out, stderr=out
        )
        try:
            tune_files.wait_for(
                lambda: train_checkpointed(runs),
                "the Train run's first checkpoint",
                timeout_s=300,
                alive=lambda: stage.poll() is None,
            )
            (driver,) = ray_workers(stage.pid, "ray::ImplicitFunc")
            os.kill(driver, signal.SIGKILL)
            try:
                code = stage.wait(timeout=600)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, log.read_text()[-8000:]
        finally:
            if stage.poll() is None:
                stage.kill()
    summary = load_results(env, "train")
    (trial,) = summary["trials"]
    assert trial["status"] == "completed" and trial["epochs"] == 3
    assert trial["metrics"]["start_epoch"] >= 1  # the retried driver's run resumed
    (folder,) = trial_dirs(env, "train")
    assert (folder / "error.txt").exists()  # Tune saw the trial fail, and retried it
    assert sorted(p.name for p in runs.iterdir()) == [f"train-{trial['trial_id']}"]


# A task on a cluster the snippet starts asks Ray's State API without an address, as Ray
# Train's placement-group cleaner does (placement_group_cleaner.py: is_actor_alive).
STATE_API_FROM_A_TASK = """
import os, sys, ray
from jobs.core.connection import init_local, local_init_kwargs
if sys.argv[1] == "bare":  # Ray's own way: no dashboard address for the cluster's processes
    kwargs = local_init_kwargs()
    del kwargs["dashboard_port"], os.environ["RAY_API_SERVER_ADDRESS"]
    ray.init(**kwargs, num_gpus=0, logging_level="ERROR")
else:  # as a stage starts one: its own dashboard, on another port if the first was taken
    init_local(num_gpus=0, logging_level="ERROR")

@ray.remote(num_cpus=0)
def nodes():
    from ray.util.state import list_nodes
    try:
        return f"nodes: {len(list_nodes())}"
    except ConnectionError as err:
        return f"ConnectionError: {err}"

print(ray.get(nodes.remote()))
"""


def test_a_started_cluster_finds_its_own_dashboard_beside_another_ray(stage_env, head) -> None:
    """Beside another Ray on the machine (the shared head), Ray's auto-detection of "the"
    local cluster raises ConnectionError; in Train's placement-group cleaner that killed its
    monitor, so a dead trial's workers were never freed and the retried trial waited for them
    forever (the driver-loss test above, in CI). A cluster a stage starts names its dashboard
    to its processes (jobs/core/connection.py), as a private head does (LocalCluster)."""
    for how, expected in (
        ("bare", "ConnectionError: Found multiple active Ray instances"),
        ("named", "nodes: 1"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", STATE_API_FROM_A_TASK, how],
            cwd=REPO,
            env=stage_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, explain(proc)
        assert proc.stdout.strip().splitlines()[-1].startswith(expected), (how, explain(proc))


def train_checkpointed(runs: Path) -> bool:
    """Whether a Train run's snapshot (what a new driver of that run resumes from) records a
    checkpoint yet."""
    for snapshot in runs.glob("train-*/checkpoint_manager_snapshot.json"):
        try:
            if json.loads(snapshot.read_text()).get("latest_checkpoint_result"):
                return True
        except ValueError:  # being written
            continue
    return False


def ray_workers(root: int, title: str) -> list[int]:
    """Processes below `root` whose Ray process title starts with `title`."""
    return [pid for pid in descendants(root) if process_title(pid).startswith(title)]


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


def test_make_submit_all_runs_the_walkthrough_on_one_head_stops_at_a_failure_and_resumes(
    stage_env,
) -> None:
    """`make submit STAGE=all`: the five stages through the Jobs API on one private head.
    An injected failure in `tune` (no FailureConfig there) stops the walk with the stage's
    name and exit 1; the same command again resumes `tune` and runs the rest."""
    # One trial of one epoch per stage, at a learning rate that learns in one epoch, in
    # batches of 32: train's two DDP workers then take 8 steps together, as the others do at
    # 64 (at 64 each, train's 4 steps left it at 27% accuracy).
    env = {
        **_submit_env(stage_env),
        **{"TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1", "TUNE_LR_POINTS": "1e-3"},
        "BATCH_SIZE": "32",
    }
    # As a user types it; the settings travel in the environment, as in the README.
    proc = run_make(["submit", "STAGE=all"], {**env, "FAIL_AT_EPOCH": "1"}, timeout=900)
    assert proc.returncode == 2, explain(proc)  # make's code for a failed command
    assert re.search(r"job baseline-\w+ SUCCEEDED", proc.stdout)
    assert re.search(r"job tune-\w+ FAILED", proc.stdout)
    assert "error: stage tune ended FAILED" in proc.stderr
    assert "not run: asha, checkpoint, train" in proc.stderr
    assert load_results(env, "tune")["counts"]["errored"] == 1
    assert not (Path(env["STORAGE_PATH"]) / "asha").exists()
    # The module's own code: 1, like a single stage's failed job.
    temp_dir = re.search(r"temp dir (\S+)\)", proc.stdout).group(1)
    assert not _head_processes(temp_dir)  # the head it started is gone
    assert not os.path.exists(temp_dir)

    proc = run_make(["submit", "STAGE=all"], env, timeout=1200)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.count("[submit] local Ray head up at") == 1, "one head for all five"
    for stage in ("baseline", "tune", "asha", "checkpoint", "train"):
        assert re.search(rf"job {stage}-\w+ SUCCEEDED", proc.stdout), stage
        assert_sound(load_results(env, stage), stage, 1)
    assert "[experiment] resuming" in proc.stdout  # tune, from the first walk
    table = proc.stdout.split("[submit] the walkthrough's 5 stages on one cluster:\n")[1]
    rows = [line.split() for line in table.splitlines()[1:6]]
    assert [row[0] for row in rows] == ["baseline", "tune", "asha", "checkpoint", "train"]
    for row in rows:  # trials, best metric, time, CPU core-hours (no prices: no cost)
        assert row[1] == "1" and row[2] == "val_loss" and float(row[3]) > 0, row
        assert row[-4] == "CPU" and float(row[-3]) >= 0 and row[-2:] == ["-", "-"], row


def test_asha_resume_runs_its_errored_trials_again_under_their_ids(on_head) -> None:
    """Optuna knows trials by id: a restart under a new id raised KeyError out of fit()."""
    env = {**on_head, "TUNE_NUM_SAMPLES": "1", "TUNE_NUM_EPOCHS": "1"}
    proc = run_module("jobs.asha", [], {**env, "FAIL_AT_EPOCH": "1"})
    assert proc.returncode == 1, explain(proc)
    failed = load_results(env, "asha")
    assert failed["counts"]["errored"] == 1
    proc = run_stage("asha", env, "--resume")
    assert "KeyError" not in proc.stdout + proc.stderr
    summary = load_results(env, "asha")
    assert summary["counts"] == {"completed": 1, "early_stopped": 0, "errored": 0}
    ids = sorted(t["trial_id"] for t in summary["trials"])
    assert ids == sorted(t["trial_id"] for t in failed["trials"])
    # Each trial's own output is kept in its folder (log_to_file), last run's epoch line too.
    (folder,) = trial_dirs(env, "asha")
    assert re.search(r"\] epoch 1/1 loss=", (folder / "stdout").read_text())
    # Both attempts' driver logs are beside the experiment, the first with its errors.
    first, second = sorted((Path(env["STORAGE_PATH"]) / "asha.logs").glob("*.log"))
    assert "error: 1 of 1 trials errored" in first.read_text()
    assert "[asha] summary: " in second.read_text()


def test_checkpoint_stopper_ends_the_whole_experiment_at_its_threshold(on_head) -> None:
    # The walkthrough's Stopper with a threshold the first epoch passes, one trial at a
    # time: after the first trial's first epoch the whole experiment stops, so the second
    # trial never trains.
    env = dict(on_head, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="3", TUNE_MAX_CONCURRENT="1")
    run_stage("checkpoint", {**env, "TUNE_METRIC": "val_accuracy", "STOP_ALL_AT": "0.01"})
    summary = load_results(env, "checkpoint")
    assert sorted(t["epochs"] for t in summary["trials"]) in ([1], [0, 1]), summary["trials"]
    assert summary["compute"]["trial_epochs"] == 1
    assert summary["counts"]["completed"] == 0
    assert [reported_epochs(d) for d in trial_dirs(env, "checkpoint") if reported_epochs(d)] == [
        [1]
    ]


def test_checkpoint_per_trial_time_limit_stops_each_trial_ranked_on_val_accuracy(
    on_head,
) -> None:
    # Any epoch takes longer than 0.1 s: every trial stops after its first. Ranked on a
    # maximised metric: the best trial is the one with the highest val_accuracy.
    env = dict(on_head, TUNE_NUM_SAMPLES="2", TUNE_NUM_EPOCHS="3", TRIAL_TIME_LIMIT_S="0.1")
    env.update(TUNE_LR_POINTS="1e-3,0.1", TUNE_METRIC="val_accuracy")
    proc = run_stage("checkpoint", env)
    summary = load_results(env, "checkpoint")
    assert [t["epochs"] for t in summary["trials"]] == [1, 1]
    assert summary["counts"] == {"completed": 0, "early_stopped": 2, "errored": 0}
    assert summary["mode"] == "max" and "ranked on val_accuracy (max)" in proc.stdout
    accuracies = sorted(t["metrics"]["val_accuracy"] for t in summary["trials"])
    assert accuracies[0] < accuracies[1]  # lr 0.1 diverges: the ranking has a side to pick
    assert summary["best"]["metrics"]["val_accuracy"] == accuracies[1]


def test_checkpoint_time_budget_ends_the_experiment_before_a_trial_reports(on_head) -> None:
    # A 1 ms budget against 200 trials: Tune's TimeoutStopper ends the experiment before any
    # trial could start training on any machine (a trial's process and imports alone take a
    # second), so what the cut leaves is the test's design, not the machine's speed. (A 30 s
    # budget meant to leave one result ended a CI run under load before the first epoch.) A
    # cut that leaves results keeps and ranks them as the Stopper's stop_all above does.
    env = dict(on_head, TRAIN_LIMIT="256", VAL_LIMIT="128")
    env.update(TUNE_NUM_SAMPLES="200", TUNE_NUM_EPOCHS="3", TUNE_MAX_CONCURRENT="1")
    proc = run_module("jobs.checkpoint", [], {**env, "TIME_BUDGET_S": "0.001"})
    assert proc.returncode == 1, explain(proc)
    assert proc.stderr.endswith(
        "error: no trial reported val_loss (stopped before its first epoch ended)\n"
    ), explain(proc)
    summary = load_results(env, "checkpoint")  # what the cut left is still written
    assert summary["best"] is None and summary["counts"]["completed"] == 0, summary
    assert summary["compute"]["trial_epochs"] == 0 and len(summary["trials"]) < 200
