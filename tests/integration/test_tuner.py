"""Every Tune stage builds its Tuner in a small private Ray, without fit(): the experiment
is restorable from the moment it is created."""

from __future__ import annotations

import pytest
import ray
from ray import tune

from jobs import asha, checkpoint, train
from jobs import tune as tune_stage
from jobs.core.resources import ClusterView
from tests.support.runs import settings as resolve

CPU_2 = ClusterView(cpus=2, gpus=0, max_node_cpus=2, resources={"CPU": 2})


@pytest.fixture
def local_ray(ray_tmp):
    """tune.with_parameters stores its objects in Ray: a small private instance."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        _temp_dir=str(ray_tmp),
        logging_level="WARNING",
    )
    yield
    ray.shutdown()


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
