"""Adding a stage is one new file and one registry line: a throwaway sixth stage, registered
here, gets settings, --help, a dry run, a Tune configuration and its RayJob manifests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from ray import tune

from jobs import registry
from jobs.core import cli
from jobs.core.resources import ClusterView
from tests.support.runs import REPO

STAGE_FILE = '''
"""A throwaway Part 6: one grid of learning rates."""
from ray import tune

from jobs.core import tune_run
from jobs.core.search import search_space
from jobs.core.stage import Kubernetes, Stage


def tuner(settings, plan, trainable):
    return tune.Tuner(
        trainable,
        param_space=search_space(settings),
        tune_config=tune.TuneConfig(metric=settings.metric, mode=settings.mode, num_samples=1,
                                    max_concurrent_trials=plan.max_concurrent),
        run_config=tune_run.run_config(settings),
    )


STAGE = Stage(
    name="grid",
    part=6,
    defaults={"num_epochs": 1, "num_samples": 1},
    run=tune_run.TuneRun(tuner=tuner),
    kubernetes=Kubernetes(deadline_s=900),
)
'''


@pytest.fixture
def grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "throwaway_grid.py").write_text(STAGE_FILE)  # the one new file
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.STAGES, "grid", "throwaway_grid")  # the one registry line
    yield registry.load("grid")
    sys.modules.pop("throwaway_grid", None)


def test_a_registered_stage_gets_settings_help_and_a_dry_run(
    grid, tiny_env, capsys, monkeypatch
) -> None:
    assert "grid" in registry.names()
    for key, value in tiny_env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(grid, ["--dry-run", "--num-epochs", "4"]) == 0
    out = capsys.readouterr().out
    assert '"stage": "grid"' in out and '"num_epochs": 4' in out and '"num_samples": 1' in out
    with pytest.raises(SystemExit):
        cli.main(grid, ["--help"])
    assert "walkthrough part 6" in capsys.readouterr().out
    s = cli.prepare(grid, [], tiny_env)
    seen = {}
    monkeypatch.setattr(tune, "Tuner", lambda trainable, **kw: seen.update(kw))
    grid.run.tuner(s, grid.run.plan(s, ClusterView(2, 0, 2, {"CPU": 2})), "trainable")
    config = seen["tune_config"]
    assert config.num_samples == 1 and config.max_concurrent_trials == 1
    assert seen["run_config"].name == "grid"


def test_a_registered_stage_gets_its_rayjob_manifests(grid) -> None:
    spec = importlib.util.find_spec("jobs.kube.render")  # a fresh copy: the stage is new
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    files = render.render()
    rayjob = yaml.safe_load(files[REPO / "k8s" / "rayjob-grid.yaml"])
    assert rayjob["spec"]["entrypoint"] == "python -m throwaway_grid"
    # The stage's own deadline plus the default variant's cold start of a GPU node.
    cold = yaml.safe_load((REPO / "k8s" / "values" / "gke.yaml").read_text())["cold_start_s"]
    assert rayjob["spec"]["activeDeadlineSeconds"] == 900 + cold["t4"]
    kind = yaml.safe_load(files[REPO / "k8s" / "kind" / "rayjob-grid.yaml"])
    assert kind["spec"]["activeDeadlineSeconds"] == 1800  # kind's CI-sized override
    assert kind["metadata"]["name"] == "ray-tune-grid"
