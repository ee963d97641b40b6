"""Each stage's Tuner as its stage file builds it, without Ray running; trial records from
Tune results."""

from __future__ import annotations

import ast
import json
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from jobs import asha, checkpoint, train
from jobs import tune as tune_stage
from jobs.core import records as results
from jobs.core import stoppers
from jobs.core.resources import ClusterView
from jobs.core.search import search_space
from jobs.core.settings import SPOT_RETRIES
from jobs.core.training_spec import HYPERPARAMETERS
from tests.support.runs import REPO
from tests.support.runs import settings as resolve

CPU_2 = ClusterView(cpus=2, gpus=0, max_node_cpus=2, resources={"CPU": 2})


class Built:
    """What a stage's `tune.Tuner(...)` call was given (stands in for tune.Tuner)."""

    def __init__(
        self, trainable: Any, *, param_space: dict, tune_config: Any, run_config: Any
    ) -> None:
        self.trainable, self.param_space = trainable, param_space
        self.tune_config, self.run_config = tune_config, run_config


def built(stage_module, name: str, *argv: str, env: dict | None = None):
    """The settings, the plan on a 2-CPU cluster and the stage's fresh Tuner's arguments."""
    s = resolve(name, *argv, env=env)
    run = stage_module.STAGE.run
    plan = run.plan(s, CPU_2)
    with mock.patch.object(tune, "Tuner", Built):
        tuner = run.tuner(s, plan, "the trainable")
    assert isinstance(tuner, Built) and tuner.trainable == "the trainable"
    return s, plan, tuner


def _wire(stage_module, name: str, *argv: str):
    s, plan, tuner = built(stage_module, name, *argv)
    return s, plan, tuner.tune_config


TUNE_STAGES = [(tune_stage, "tune"), (asha, "asha"), (checkpoint, "checkpoint"), (train, "train")]


@pytest.mark.parametrize(("module", "name"), TUNE_STAGES, ids=[n for _, n in TUNE_STAGES])
def test_each_tune_stage_file_builds_its_tuner_in_plain_sight(module, name: str) -> None:
    """The walkthrough's calls are in the stage file: tune.Tuner, tune.TuneConfig and the
    stage's RunConfig, with the walkthrough's keyword names."""
    tree = ast.parse((REPO / "jobs" / f"{name}.py").read_text(encoding="utf-8"))
    calls = {
        ast.unparse(node.func): {k.arg for k in node.keywords}
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    }
    assert {"param_space", "tune_config", "run_config"} <= calls["tune.Tuner"]
    assert {"metric", "mode", "num_samples", "search_alg"} <= calls["tune.TuneConfig"]
    assert "tune_run.run_config" in calls
    s, _, tuner = built(module, name)
    assert tuner.run_config.name == name and tuner.run_config.storage_path == s.storage_path
    # The shared trial keeps its process for the next trial; train's trial is a Train driver.
    assert tuner.tune_config.reuse_actors is (name != "train")


@pytest.mark.parametrize(("module", "name"), TUNE_STAGES, ids=[n for _, n in TUNE_STAGES])
def test_every_trial_config_names_exactly_the_hyperparameters(module, name: str) -> None:
    """batch_size and num_epochs reach a trial one way: its config, like lr."""
    _, _, tuner = built(module, name, "--batch-size", "32", "--num-epochs", "2")
    assert set(tuner.param_space) == set(HYPERPARAMETERS)
    assert (tuner.param_space["batch_size"], tuner.param_space["num_epochs"]) == (32, 2)


def test_search_space_is_the_walkthroughs() -> None:
    space = search_space(resolve("tune"))
    assert isinstance(space["lr"], tune.search.sample.Float)
    assert (space["lr"].lower, space["lr"].upper) == (1e-4, 1e-1)
    assert (space["batch_size"], space["num_epochs"]) == (128, 3)


def test_tune_stage_is_random_search_capped_by_resources() -> None:
    _s, plan, config = _wire(tune_stage, "tune")
    assert isinstance(config.search_alg, BasicVariantGenerator)
    assert config.search_alg.max_concurrent == plan.max_concurrent == 2
    assert (config.metric, config.mode, config.num_samples) == ("val_loss", "min", 4)
    assert config.scheduler is None


def test_asha_stage_is_optuna_plus_asha_on_epochs() -> None:
    _, _, config = _wire(asha, "asha", "--lr-points", "0.001,0.1")
    assert isinstance(config.search_alg, OptunaSearch)
    assert config.search_alg._points_to_evaluate == [{"lr": 0.001}, {"lr": 0.1}]
    sched = config.scheduler
    assert isinstance(sched, AsyncHyperBandScheduler)
    assert sched._time_attr == "epoch" and sched._max_t == 10
    # grace_period=2, reduction factor 4, max_t=10: ASHA judges trials at epochs 2 and 8.
    assert sorted(milestone for milestone, _ in sched._brackets[0]._rungs) == [2, 8]
    assert config.num_samples == 4 and config.max_concurrent_trials == 2


def test_asha_lets_trials_run_past_the_walkthroughs_max_t() -> None:
    # ASHA stops any trial that reaches max_t, so a budget over 10 epochs raises it.
    s, _, config = _wire(asha, "asha", "--num-epochs", "16")
    assert config.scheduler._max_t == 16
    assert asha.STAGE.run.rungs(s) == (2, 8)  # 32 is past the budget
    s, _, config = _wire(asha, "asha", "--num-epochs", "3")
    assert config.scheduler._max_t == 10 and asha.STAGE.run.rungs(s) == (2,)  # plotted rungs


def test_checkpoint_stage_retries_keeps_checkpoints_and_stops() -> None:
    _, _, tuner = built(
        checkpoint,
        "checkpoint",
        *("--stop-all-at", "0.05", "--stop-trial-worse-than", "1.0"),
        *("--trial-time-limit-s", "60", "--time-budget-s", "600"),
    )
    run = tuner.run_config
    assert run.failure_config.max_failures == 2
    assert run.checkpoint_config.num_to_keep == 1
    assert isinstance(run.stop, stoppers.ThresholdStopper)
    assert tuner.tune_config.time_budget_s == 600
    assert built(checkpoint, "checkpoint")[2].run_config.stop is None
    # The flags reach the stopper's decisions (val_loss, min; STOP_TRIAL_AFTER's default 5).
    stop = run.stop
    assert not stop("a", {"val_loss": 2.0, "epoch": 5, "time_total_s": 10})
    assert stop("a", {"val_loss": 2.0, "epoch": 6, "time_total_s": 12})  # worse than 1.0
    assert not stop("b", {"val_loss": 0.5, "epoch": 6, "time_total_s": 59.9})
    assert stop("b", {"val_loss": 0.5, "epoch": 7, "time_total_s": 60})  # the time limit
    assert not stop.stop_all()
    assert not stop("c", {"val_loss": 0.05, "epoch": 2, "time_total_s": 5})
    assert stop.stop_all()  # a trial reached --stop-all-at


def _stopper(**env: str) -> stoppers.ThresholdStopper:
    """The checkpoint stage's stopper from an environment alone (how a RayJob sets it)."""
    stop = built(checkpoint, "checkpoint", env=env)[2].run_config.stop
    assert isinstance(stop, stoppers.ThresholdStopper)
    return stop


# TUNE_METRIC, STOP_TRIAL_WORSE_THAN with a worse and a better value, STOP_ALL_AT with a
# value just short of it.
STOP_CASES = [
    ("val_loss", "1.0", 1.5, 0.5, "0.05", 0.06),  # min: worse is higher
    ("val_accuracy", "0.5", 0.4, 0.6, "0.9", 0.89),  # max: worse is lower
]


@pytest.mark.parametrize(
    ("metric", "worse_than", "bad", "good", "stop_all_at", "short"),
    STOP_CASES,
    ids=[c[0] for c in STOP_CASES],
)
def test_checkpoint_stop_settings_reach_the_stopper_from_the_environment(
    metric: str, worse_than: str, bad: float, good: float, stop_all_at: str, short: float
) -> None:
    # STOP_TRIAL_WORSE_THAN applies only after STOP_TRIAL_AFTER epochs, in the metric's mode.
    stop = _stopper(TUNE_METRIC=metric, STOP_TRIAL_WORSE_THAN=worse_than, STOP_TRIAL_AFTER="3")
    assert not stop("a", {metric: bad, "epoch": 3})  # still within the 3 epochs
    assert stop("a", {metric: bad, "epoch": 4})
    assert not stop("b", {metric: good, "epoch": 4})
    assert not stop("b", {metric: good, "epoch": 50, "time_total_s": 10**6})  # no time limit
    assert not stop.stop_all()  # STOP_ALL_AT unset
    default = _stopper(TUNE_METRIC=metric, STOP_TRIAL_WORSE_THAN=worse_than)
    assert not default("a", {metric: bad, "epoch": 5}) and default("a", {metric: bad, "epoch": 6})
    # STOP_ALL_AT ends the experiment once any trial reaches it, and only then.
    stop = _stopper(TUNE_METRIC=metric, STOP_ALL_AT=stop_all_at)
    assert not stop("a", {metric: short, "epoch": 1}) and not stop.stop_all()
    assert not stop("a", {metric: bad, "epoch": 20})  # no per-trial rule
    assert not stop("b", {metric: float(stop_all_at), "epoch": 1})
    assert stop.stop_all()
    # TRIAL_TIME_LIMIT_S stops each trial at that age, whatever its metric.
    stop = _stopper(TUNE_METRIC=metric, TRIAL_TIME_LIMIT_S="60")
    assert not stop("a", {metric: good, "epoch": 1, "time_total_s": 59.5})
    assert stop("a", {metric: good, "epoch": 2, "time_total_s": 60})
    assert not stop.stop_all()


def test_threshold_stopper_is_the_walkthroughs() -> None:
    stopper = stoppers.ThresholdStopper(
        "val_loss", "min", stop_all_at=0.05, worse_than=1.0, after=5, time_limit_s=100
    )
    assert not stopper("a", {"val_loss": 2.0, "epoch": 5})  # still within the grace epochs
    assert stopper("a", {"val_loss": 2.0, "epoch": 6})  # bad after 5 epochs: stop this trial
    assert not stopper.stop_all()
    assert stopper("b", {"val_loss": 0.5, "epoch": 1, "time_total_s": 100})  # time limit
    assert not stopper("c", {"val_loss": 0.04, "epoch": 2})
    assert stopper.stop_all()  # one trial reached 0.05: stop everything
    maximise = stoppers.ThresholdStopper(
        "val_accuracy", "max", stop_all_at=0.9, worse_than=0.5, after=1, time_limit_s=None
    )
    assert maximise("a", {"val_accuracy": 0.4, "epoch": 2})
    assert not maximise("a", {"val_accuracy": 0.6, "epoch": 2}) and not maximise.stop_all()


def test_train_stage_wiring() -> None:
    _, plan, tuner = built(train, "train")
    config = tuner.tune_config
    assert isinstance(config.search_alg, BasicVariantGenerator)
    assert config.num_samples == 2 and config.search_alg.max_concurrent == 1
    assert tuner.run_config.failure_config.max_failures == 1
    assert plan.resources["cpu"] == 0.01 and plan.num_workers == 2


def _result(trial_id: str, epoch: int, val_loss: float | None, error=None, num_epochs=3):
    metrics = (
        {}
        if val_loss is None
        else {
            "trial_id": trial_id,
            "epoch": epoch,
            "val_loss": val_loss,
            "loss": 0.5,
            "val_accuracy": 0.8,
            "done": True,
        }
    )
    return SimpleNamespace(
        metrics=metrics,
        config={"lr": 0.01, "num_epochs": num_epochs},
        error=error,
        path=f"/x/train_trial_{trial_id}_0_lr=0.01_2026",
    )


def test_results_from_tune_results_statuses_best_and_schema() -> None:
    records = [
        results.record_from_result(r, 3)
        for r in (
            _result("aaaaaaaa", 3, 0.4),
            _result("bbbbbbbb", 2, 0.9),
            _result("cccccccc", 0, None, error=RuntimeError("x")),
            _result("dddddddd", 3, 0.3),
        )
    ]
    summary = results.Summary("asha", "val_loss", "min", records, 12.5).as_dict()
    assert set(summary) == {"stage", "metric", "mode", "best", "trials", "counts", "wall_time_s"}
    assert summary["counts"] == {"completed": 2, "early_stopped": 1, "errored": 1}
    assert summary["best"]["trial_id"] == "dddddddd"
    assert set(summary["best"]) == {"trial_id", "config", "metrics"}
    statuses = {t["trial_id"]: t["status"] for t in summary["trials"]}
    assert statuses == {
        "aaaaaaaa": "completed",
        "bbbbbbbb": "early_stopped",
        "cccccccc": "errored",
        "dddddddd": "completed",
    }
    keys = {"trial_id", "status", "epochs", "config", "metrics"}
    for t in summary["trials"]:  # an errored trial also says why, in one line
        assert set(t) == (keys | {"error"} if t["status"] == "errored" else keys), t
    assert {t["trial_id"]: t.get("error") for t in summary["trials"]}["cccccccc"] == "x"


# The raylet's message for a worker its memory monitor killed (Ray 2.60), trimmed.
OOM = (
    "ray.exceptions.OutOfMemoryError: 1 worker(s) were killed due to the node running low on "
    "memory. Memory on the node (IP: 10.0.0.3, ID: 1c) was 2.14GB used / 23.54GB limit "
    "(0.090974)\nSelected to kill: (Actor(ab), task name=ImplicitFunc.__init__, pid=9711, "
    "actual memory used=0.52GB, worker ID=d5)\n]\nRefer to the documentation"
)


# Ray's message for an actor whose worker process died by SIGKILL (Ray 2.60), trimmed: what
# a trial killed by its container's memory limit ends with.
DIED = (
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of "
    "file. There are some potential root causes. (1) The process is killed by SIGKILL by OOM "
    "killer due to high memory usage. (2) ray stop --force is called."
)


def test_a_trial_killed_at_its_containers_memory_limit_says_so_too() -> None:
    killed = results.record_from_result(_result("dddddddd", 0, None, error=DIED), 3)
    assert killed.killed_for_memory and killed.error.startswith(results.OOM_KILLED)
    summary = results.Summary("tune", "val_loss", "min", [killed], 1.0)
    (line,) = results.error_report(summary, 256)
    assert "raise TRIAL_MEMORY_MIB" in line and "\n" not in line


def test_a_trial_killed_for_memory_says_so_in_one_line_with_what_to_raise() -> None:
    killed = results.record_from_result(_result("aaaaaaaa", 0, None, error=OOM), 3)
    failed = results.record_from_result(_result("bbbbbbbb", 0, None, error="a\nValueError: b"), 3)
    assert killed.error == (
        "killed by Ray's memory monitor; the killed worker held 0.52GB; its node had 2.14GB "
        "of 23.54GB in use"
    )
    assert failed.error == "ValueError: b" and not failed.killed_for_memory
    summary = results.Summary("tune", "val_loss", "min", [killed, failed], 1.0)
    lines = results.error_report(summary, 256)
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("trial aaaaaaaa errored: killed by Ray's memory monitor")
    assert "reserved 256 MiB (TRIAL_MEMORY_MIB)" in lines[0]
    assert "raise TRIAL_MEMORY_MIB" in lines[0]
    assert lines[1] == "trial bbbbbbbb errored: ValueError: b"
    # Round trip through results.json keeps the reason.
    again = results.Summary.from_dict(json.loads(json.dumps(summary.as_dict())))
    assert results.error_report(again, 256) == lines


@pytest.mark.parametrize("planned", [3, 5])
def test_status_uses_the_trials_own_epoch_count(planned: int) -> None:
    record = results.record_from_result(_result("aaaaaaaa", 3, 0.4, num_epochs=planned), 99)
    assert record.status == ("completed" if planned == 3 else "early_stopped")


@pytest.mark.parametrize(
    ("module", "name", "own"),
    [
        (tune_stage, "tune", 0),
        (asha, "asha", 0),
        (checkpoint, "checkpoint", 2),
        (train, "train", 1),
    ],
)
def test_spot_makes_every_tune_stage_save_each_epoch_and_retry_past_reclaims(
    module, name: str, own: int, monkeypatch
) -> None:
    """SPOT=true (a values file's spot: true): the trial checkpoints every epoch, keeping
    the latest where the stage keeps none of its own, and may fail SPOT_RETRIES more times
    than the stage's own allowance (a reclaim is not the trial's fault)."""
    run = module.STAGE.run
    off, _, plain = built(module, name)
    on, _, spotted = built(module, name, env={"SPOT": "true"})
    assert off.spot is False and on.spot is True
    assert (plain.run_config.failure_config or tune.FailureConfig()).max_failures == own
    spot = spotted.run_config
    assert spot.failure_config.max_failures == own + SPOT_RETRIES
    assert spot.checkpoint_config.num_to_keep == 1
    assert run.saves_checkpoints(on)
    assert run.saves_checkpoints(off) == (name in ("checkpoint", "train"))
    if name == "checkpoint":  # its own checkpoint config (best by the metric) stays
        assert spot.checkpoint_config.checkpoint_score_attribute == "val_loss"
    if name == "train":  # the Train run inside the trial gets the same allowance
        monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: kw["run"])
        spec = run.trainable(on, run.plan(on, CPU_2))
        assert spec.max_failures == train.TRAIN_MAX_FAILURES + SPOT_RETRIES


def test_an_experiment_saved_before_the_stopper_moved_still_unpickles() -> None:
    """tuner.pkl of an experiment on the volume names the Stopper's class where it was then
    (jobs.checkpoint.ThresholdStopper); resuming it must still find the class."""
    import pickle

    stop = stoppers.ThresholdStopper(
        "val_loss", "min", stop_all_at=None, worse_than=1.0, after=1, time_limit_s=None
    )
    old = pickle.dumps(stop, protocol=0).replace(b"jobs.core.stoppers", b"jobs.checkpoint")
    assert b"jobs.checkpoint\nThresholdStopper" in old
    back = pickle.loads(old)
    assert isinstance(back, stoppers.ThresholdStopper) and back.worse_than == 1.0
