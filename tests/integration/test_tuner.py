"""Tune wiring in a small private Ray: every Tune stage builds its Tuner without fit() (the
experiment is restorable from the moment it is created), and the checkpoint stage's
CheckpointConfig plus export keep and export the best epoch, on scripted metrics."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import ray
import torch
from ray import tune

from jobs import asha, checkpoint, train
from jobs import tune as tune_stage
from jobs.core import checkpoints
from jobs.core import records as results
from jobs.core.export import export_best_model
from jobs.core.resources import ClusterView
from tests.support.runs import settings as resolve

CPU_2 = ClusterView(cpus=2, gpus=0, max_node_cpus=2, resources={"CPU": 2})


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """tune.with_parameters stores its objects in Ray: a small private instance, one for
    the module's tests (each keeps its own storage path and experiment)."""
    temp = tempfile.mkdtemp(prefix="rtk-t-")  # short: Ray's socket paths stay < 107 chars
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        _temp_dir=temp,
        logging_level="WARNING",
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def test_every_tune_stage_builds_a_tuner_without_fit(tmp_path, local_ray) -> None:
    for module, name in (
        (tune_stage, "tune"),
        (asha, "asha"),
        (checkpoint, "checkpoint"),
        (train, "train"),
    ):
        s = resolve(name, env={"STORAGE_PATH": str(tmp_path)})
        run = module.STAGE.run
        plan = run.plan(s, CPU_2)
        trainable = tune.with_resources(run.make_trainable(s, plan), plan.resources)
        tuner = run.open_tuner(s, plan, trainable)
        assert isinstance(tuner, tune.Tuner)
        # Tune writes tuner.pkl on construction: a run killed before fit() is restorable.
        assert tune.Tuner.can_restore(str(tmp_path / name))


def _scripted_trial(config: dict) -> None:
    """A trial that reports a fixed metric sequence, checkpointing every epoch as the
    checkpoint stage's trial does (same file format), so the best epoch is known."""
    for epoch, value in enumerate(config["values"], start=1):
        state = {"model": {"w": torch.tensor([float(epoch)])}, "epoch": epoch}
        with checkpoints.saved(state, tune.Checkpoint) as saved:
            tune.report({"epoch": epoch, config["metric"]: value}, checkpoint=saved)


@pytest.mark.parametrize(
    ("metric", "values", "best_epoch"),
    [("val_loss", [0.5, 0.3, 0.4], 2), ("val_accuracy", [0.6, 0.8, 0.7], 2)],
)
def test_best_model_is_the_best_epoch_by_the_metric_and_mode_not_the_last(
    tmp_path, local_ray, capsys, metric, values, best_epoch
) -> None:
    s = resolve("checkpoint", env={"STORAGE_PATH": str(tmp_path), "TUNE_METRIC": metric})
    stage: dict = {}  # the checkpoint stage's Tuner arguments, for its RunConfig
    with mock.patch.object(tune, "Tuner", lambda trainable, **kw: stage.update(kw)):
        checkpoint.STAGE.run.tuner(s, checkpoint.STAGE.run.plan(s, CPU_2), _scripted_trial)
    grid = tune.Tuner(
        _scripted_trial,
        param_space={"values": values, "metric": metric, "num_epochs": len(values)},
        tune_config=tune.TuneConfig(metric=s.metric, mode=s.mode, num_samples=1),
        run_config=stage["run_config"],
    ).fit()
    (result,) = grid
    # The latest checkpoint stays too (what a retry resumes from): best plus latest on disk.
    kept = sorted(p.name for p in Path(result.path).glob("checkpoint_*"))
    assert kept == [f"checkpoint_{best_epoch - 1:06d}", f"checkpoint_{len(values) - 1:06d}"]
    summary = results.Summary(
        "checkpoint", s.metric, s.mode, [results.record_from_result(result, len(values))], 1.0
    )
    (path,) = export_best_model(s, grid, summary)
    exported = torch.load(path, weights_only=False)
    assert exported["epoch"] == best_epoch
    assert exported["metrics"][metric] == values[best_epoch - 1]
    assert exported["model"]["w"].item() == best_epoch
    assert f"epoch {best_epoch}, {metric}={values[best_epoch - 1]:.4g})" in capsys.readouterr().out
