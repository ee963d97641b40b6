"""TRIAL_SEEDS on the real Trainer, through the code that starts a trial: `shared` starts every
trial from SEED (same initial weights, same batch order: trials differ only in their
hyperparameters); `per-trial` gives SEED plus a number derived from the trial config, the same
for the same config in any process (a resumed trial), and the same for a Train worker (whose
config also carries its RunSpec under "run") as for a plain Tune trial. No Ray is started: the
trial functions run up to the Trainer they build."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import jobs.core.trainer as trainer_module
import jobs.core.tune_trial as trial_module
import jobs.train as train_module
from jobs.core.resources import TrialPlan
from jobs.core.trainer import Trainer
from jobs.core.training_spec import DataSpec, TrainingSpec, trial_seed
from jobs.core.tune_trial import train_trial
from tests.support.runs import REPO, clean_env

SEED = 7
A = {"lr": 1e-3, "batch_size": 8, "num_epochs": 2}
B = {"lr": 0.1, "batch_size": 16, "num_epochs": 2}


class Built(Exception):
    """Raised right after the trial built its Trainer: nothing is trained or reported."""

    def __init__(self, trainer: Trainer, seed: int) -> None:
        self.trainer, self.seed = trainer, seed


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch):
    """Run a trial function until it has built its (real) Trainer; return that Trainer's
    seed, initial weights and the images of its first training batch."""

    class Stop(Trainer):
        def __init__(self, spec: TrainingSpec, **kwargs: Any) -> None:
            # A Train worker's DDP wrapper and all-reduce need a process group: left out.
            kwargs.pop("wrap_model", None), kwargs.pop("reduce", None)
            super().__init__(spec, **kwargs)
            raise Built(self, spec.seed)

    # The trial functions import Trainer where they train (the driver never does).
    monkeypatch.setattr(trainer_module, "Trainer", Stop)
    for module in (trial_module, train_module):
        monkeypatch.setattr(module, "set_threads", lambda cpus: None)  # this process's threads
        monkeypatch.setattr(module, "quiet_known_noise", lambda: None)

    def run(start, *args: Any) -> dict[str, Any]:
        torch.rand(100)  # whatever the process drew before, the trial seeds itself
        with pytest.raises(Built) as built:
            start(*args)
        trainer = built.value.trainer
        weights = {k: v.clone() for k, v in trainer.module.state_dict().items()}
        return {"seed": built.value.seed, "weights": weights, "batch": first_batch(trainer)}

    return run


class FirstBatch(Exception):
    pass


def first_batch(trainer: Trainer) -> torch.Tensor:
    """The images the model is fed first when the Trainer trains."""

    def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        raise FirstBatch(args[0].clone())

    handle = trainer.model.register_forward_pre_hook(hook)
    try:
        with pytest.raises(FirstBatch) as fed:
            trainer.train_epoch()
    finally:
        handle.remove()
    return fed.value.args[0]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def tiny_spec(tiny_idx: Path, per_trial: bool, seed: int = SEED) -> TrainingSpec:
    """A CPU training spec on the tiny split; the trial's config gives the hyperparameters."""
    return TrainingSpec(
        data=DataSpec(str(tiny_idx), "fashion-mnist"),
        seed=seed,
        per_trial_seed=per_trial,
    )


def tune_trial(tiny_idx: Path, per_trial: bool, seed: int = SEED):
    spec = tiny_spec(tiny_idx, per_trial, seed)
    return lambda config: train_trial(dict(config), spec)


def train_worker(tiny_idx: Path, per_trial: bool, monkeypatch: pytest.MonkeyPatch):
    """jobs.train's worker loop as rank 0 of 2 Train workers (its context faked, no Ray)."""

    class Context:
        def get_world_rank(self) -> int:
            return 0

        def get_world_size(self) -> int:
            return 1  # the whole tiny split: comparable with a plain trial's batches

    import ray.train

    monkeypatch.setattr(ray.train, "get_context", lambda: Context())
    run = train_module.RunSpec(
        training=tiny_spec(tiny_idx, per_trial),
        plan=TrialPlan(False, {"cpu": 0.01}, 1, cpus_per_trial=1, num_workers=2),
        accelerator_type="",
        cuda=False,
        storage_path="/nonexistent",
    )
    # The Tune trial hands its config plus the RunSpec to every worker (train_driver).
    return lambda config: train_module.train_loop_per_worker({**config, "run": run})


def test_shared_seed_gives_every_trial_the_same_weights_and_batch_order(
    tiny_idx: Path, capture
) -> None:
    start = tune_trial(tiny_idx, per_trial=False)
    a, b = capture(start, A), capture(start, B)
    assert a["seed"] == b["seed"] == SEED
    assert same_weights(a["weights"], b["weights"])
    # Batch sizes 8 and 16: the same shuffled order, so the smaller batch is a prefix.
    assert a["batch"].shape[0] == 8 and b["batch"].shape[0] == 16
    assert torch.equal(a["batch"], b["batch"][:8])
    # The comparison can tell: another SEED is another start.
    other = capture(tune_trial(tiny_idx, per_trial=False, seed=SEED + 1), A)
    assert not same_weights(a["weights"], other["weights"])
    assert not torch.equal(a["batch"], other["batch"])


def test_per_trial_seeds_differ_between_configs_and_repeat_for_the_same_one(
    tiny_idx: Path, capture
) -> None:
    start = tune_trial(tiny_idx, per_trial=True)
    a, b, again = capture(start, A), capture(start, B), capture(start, dict(reversed(A.items())))
    assert a["seed"] != b["seed"] and SEED not in (a["seed"], b["seed"])
    assert not same_weights(a["weights"], b["weights"])
    assert not torch.equal(a["batch"], b["batch"][:8])
    # The same config (in any key order, as a restored trial gets it back) starts the same.
    assert again["seed"] == a["seed"]
    assert same_weights(a["weights"], again["weights"])
    assert torch.equal(a["batch"], again["batch"])


def test_a_train_worker_starts_like_a_plain_trial_with_the_same_config(
    tiny_idx: Path, capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for per_trial in (True, False):
        plain = capture(tune_trial(tiny_idx, per_trial), A)
        worker = capture(train_worker(tiny_idx, per_trial, monkeypatch), A)
        assert worker["seed"] == plain["seed"] == trial_seed(SEED, per_trial, A)
        assert same_weights(worker["weights"], plain["weights"])
        assert torch.equal(worker["batch"], plain["batch"])


def test_per_trial_seed_is_the_same_in_every_process() -> None:
    # A resumed trial runs in a new worker process (another PYTHONHASHSEED) and gets its
    # config back from the experiment's state, keys in any order.
    code = (
        "import json, sys; from jobs.core.training_spec import trial_seed; "
        "print(json.dumps([trial_seed(7, True, c) for c in json.loads(sys.argv[1])]))"
    )
    configs = json.dumps([A, dict(reversed(A.items())), B])
    for hash_seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", code, configs],
            cwd=REPO,
            env=clean_env(PYTHONHASHSEED=hash_seed),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        here = trial_seed(SEED, True, A)
        assert json.loads(proc.stdout) == [here, here, trial_seed(SEED, True, B)]
