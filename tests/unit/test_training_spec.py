"""One way in for training settings: every Trainer is built from a `TrainingSpec` that
`training_spec` builds from the settings, completed by `for_trial` with a config that names
exactly the HYPERPARAMETERS (a Tune trial's, or the baseline's from its settings).

The throwaway test adds a hyperparameter (weight decay) to a copy of the package by editing
three files (its declaration; its name in HYPERPARAMETERS and a TrialSpec field; the loop that
uses it) and shows it reaching the optimizer of the baseline task, the Tune trial, a Ray Train
worker and the CPU benchmark, plus `--help`, the forwarded environment and jobs/README.md's
table, with nothing else edited."""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.core.resources import TrialPlan
from jobs.core.settings import Settings
from jobs.core.training_spec import (
    HYPERPARAMETERS,
    DataSpec,
    TrainingSpec,
    hyperparameters,
    training_spec,
    trial_seed,
)
from tests.support.runs import REPO, clean_env

PLAN = TrialPlan(False, {"cpu": 2}, 1, cpus_per_trial=2)
CONFIG = {"lr": 0.05, "batch_size": 32, "num_epochs": 3}


def spec(**kw) -> TrainingSpec:
    return TrainingSpec(**{"data": DataSpec("/data", "mnist"), "seed": 7, **kw})


def test_the_builder_reads_the_settings_and_the_plan(tmp_path: Path) -> None:
    settings = Settings(
        stage="tune",
        storage_path=str(tmp_path),
        data_dir="/data",
        dataset="fashion-mnist",
        train_limit=64,
        batch_size=16,
        num_epochs=4,
        seed=3,
        trial_seeds="per-trial",
        fail_at_epoch=2,
    )
    built = training_spec(settings, PLAN, checkpoint=True)
    assert built.data == DataSpec("/data", "fashion-mnist", 64, None)
    assert built.seed == 3 and not hasattr(built, "lr")  # a config gives hyperparameters
    assert hyperparameters(settings) == {"num_epochs": 4, "batch_size": 16, "lr": 1e-3}
    assert built.per_trial_seed and built.checkpoint and built.fail_at_epoch == 2
    assert (built.use_gpu, built.cpus) == (False, 2)
    assert built.experiment_dir == str(tmp_path / "tune")
    # TORCH_THREADS: fewer torch threads than the trial's CPUs; its Ray resources unchanged.
    fewer = dataclasses.replace(settings, torch_threads=1)
    assert training_spec(fewer, PLAN).cpus == 1 and PLAN.resources == {"cpu": 2}


def test_a_trial_takes_the_hyperparameters_its_config_names_and_its_seed() -> None:
    shared = spec().for_trial(CONFIG)
    assert (shared.lr, shared.batch_size, shared.num_epochs, shared.seed) == (0.05, 32, 3, 7)
    per_trial = spec(per_trial_seed=True)
    assert per_trial.for_trial(CONFIG).seed == trial_seed(7, True, CONFIG) != 7
    assert HYPERPARAMETERS == ("num_epochs", "batch_size", "lr")
    # A config names every hyperparameter and nothing else: a key missing from a search
    # space, a misspelt one, or one that would set where the loop runs is refused.
    for config in (
        {"lr": 0.5},
        {**CONFIG, "unknown": 1},
        {**CONFIG, "cpus": 64},
        {**CONFIG, "use_gpu": True, "data": None},
    ):
        with pytest.raises(ValueError, match="must name exactly num_epochs, batch_size, lr"):
            spec().for_trial(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        shared.lr = 1.0  # type: ignore[misc]


def calls(name: str) -> dict[str, int]:
    """Calls of `name(...)` per file of jobs/, found in the source (no import needed)."""
    found: dict[str, int] = {}
    for path in sorted((REPO / "jobs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                called = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if called == name:
                    rel = str(path.relative_to(REPO))
                    found[rel] = found.get(rel, 0) + 1
    return found


def test_every_trainer_gets_its_spec_from_the_one_builder() -> None:
    callers = {"jobs/baseline.py", "jobs/core/tune_trial.py", "jobs/train.py"}
    assert set(calls("Trainer")) == callers | {"jobs/bench/bench.py"}
    assert set(calls("TrainingSpec")) == {"jobs/core/training_spec.py"}
    # Each caller's spec comes from the builder: directly, or through its stage's trainable.
    assert set(calls("training_spec")) == {
        "jobs/baseline.py",
        "jobs/core/tune_run.py",  # the shared Tune trial's spec
        "jobs/train.py",
        "jobs/bench/bench.py",
    }
    # Each Trainer's hyperparameters come from a config: the trial's, or the settings'.
    assert set(calls("for_trial")) == callers | {"jobs/bench/bench.py"}


# --- a throwaway per-trial setting, in a copy of the package ---------------------------------

# (file, the text it has, what the new setting makes of it): the only edits.
EDITS = [
    (
        "jobs/core/settings.py",
        "    lr_points: tuple[float, ...] = setting(\n",
        '    weight_decay: float = setting(0.125, env="WEIGHT_DECAY", parse=positive_float,'
        ' help="Adam weight decay")\n'
        "    lr_points: tuple[float, ...] = setting(\n",
    ),
    (
        "jobs/core/training_spec.py",
        'HYPERPARAMETERS = ("num_epochs", "batch_size", "lr")\n',
        'HYPERPARAMETERS = ("num_epochs", "batch_size", "lr", "weight_decay")\n',
    ),
    (
        "jobs/core/training_spec.py",
        "    lr: float\n",
        "    lr: float\n    weight_decay: float\n",
    ),
    (
        "jobs/core/trainer.py",
        "Adam(self.model.parameters(), lr=spec.lr)",
        "Adam(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)",
    ),
]

# Runs in the edited copy: builds each caller's Trainer the way its stage does, from the
# stage's settings, and prints the weight decay its optimizer got.
PROBE = r"""
import json, sys
from jobs import registry
from jobs.core.reading import build_parser, env_names, resolve
from jobs.core.resources import TrialPlan
from jobs.core.trainer import Trainer
from jobs.core.training_spec import hyperparameters, training_spec
from jobs.settings_table import readme_table
import jobs.baseline as baseline, jobs.core.tune_trial as tune_trial, jobs.train as train
import jobs.bench.bench as bench
import jobs.core.trainer as trainer_module

class Built(Exception):
    pass

class Seen(Trainer):
    def __init__(self, spec, **kwargs):
        kwargs.pop("wrap_model", None), kwargs.pop("reduce", None)  # no process group here
        super().__init__(spec, **kwargs)
        raise Built(self.optimizer.param_groups[0]["weight_decay"])

trainer_module.Trainer = Seen  # imported by each trial function where it trains
for module in (baseline, tune_trial, train):
    module.set_threads = lambda cpus: None
tune_trial.quiet_known_noise = train.quiet_known_noise = lambda: None

class Context:
    def get_world_rank(self): return 0
    def get_world_size(self): return 1
import ray.train
ray.train.get_context = lambda: Context()

plan = TrialPlan(False, {"cpu": 1}, 1, cpus_per_trial=1)
def spec_of(stage):
    return training_spec(resolve(registry.load(stage), []), plan)
# A trial's config: the stage's search space resolved (every hyperparameter, from the settings).
config = {**hyperparameters(resolve(registry.load("tune"), [])), "batch_size": 8, "num_epochs": 1}
runs = {
    "baseline": lambda: baseline.train_baseline(  # as jobs.baseline.run builds it
        spec_of("baseline").for_trial(hyperparameters(resolve(registry.load("baseline"), [])))),
    "tune trial": lambda: tune_trial.train_trial(dict(config), spec_of("tune")),
    # A search space that samples the new setting: the trial's value wins.
    "tune trial, searched": lambda: tune_trial.train_trial(
        {**config, "weight_decay": 0.5}, spec_of("tune")),
    "train worker": lambda: train.train_loop_per_worker(
        {**config, "run": train.RunSpec(training=spec_of("train"), plan=plan,
                                        accelerator_type="", cuda=False, storage_path="/none")}),
}
seen = {}
for who, run in runs.items():
    try:
        run()
    except Built as built:
        seen[who] = built.args[0]
try:
    bench._cpu_trainer()
except Built as built:
    seen["bench"] = built.args[0]
stages = [registry.load(n) for n in registry.names()]
print(json.dumps({
    "optimizer": seen,
    "forwarded": [n for n in registry.names() if "WEIGHT_DECAY" in env_names(registry.load(n))],
    "help": all("--weight-decay" in build_parser(s).format_help() for s in stages),
    "readme": [r for r in readme_table(stages).splitlines() if "WEIGHT_DECAY" in r],
}))
"""


def test_a_new_per_trial_setting_is_three_edits(tmp_path: Path, tiny_idx: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "jobs", copy / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    for name, old, new in EDITS:
        path = copy / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{name} no longer has {old!r} once"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    edited = sorted({name for name, _, _ in EDITS})
    changed = sorted(
        str(p.relative_to(copy))
        for p in (copy / "jobs").rglob("*.py")
        if p.read_bytes() != (REPO / p.relative_to(copy)).read_bytes()
    )
    assert (
        changed
        == edited
        == [
            "jobs/core/settings.py",
            "jobs/core/trainer.py",
            "jobs/core/training_spec.py",
        ]
    )
    env = clean_env(
        PYTHONPATH=str(copy),
        WEIGHT_DECAY="0.25",
        DATA_DIR=str(tiny_idx),
        DATASET="fashion-mnist",
        STORAGE_PATH=str(tmp_path / "storage"),
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # WEIGHT_DECAY=0.25 reaches every stage's loop; the benchmark, which fixes its own
    # settings, gets the declared default.
    assert out["optimizer"] == {
        "baseline": 0.25,
        "tune trial": 0.25,
        "tune trial, searched": 0.5,
        "train worker": 0.25,
        "bench": 0.125,
    }
    assert out["forwarded"] == ["baseline", "tune", "asha", "checkpoint", "train"]
    assert out["help"] is True
    assert len(out["readme"]) == 1 and "Adam weight decay" in out["readme"][0]
    # The repository itself is untouched: no such setting here.
    assert "weight_decay" not in {f.name for f in dataclasses.fields(Settings)}
