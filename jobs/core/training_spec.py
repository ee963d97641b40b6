"""The training spec: everything the training loop reads, built from the settings in one place.

`training_spec` builds it; `TrainingSpec.for_trial` completes it with a trial's config.

Every caller of `Trainer` (the baseline task, the Tune trial, each Ray Train worker, the CPU
benchmark) gets its spec from `training_spec`, so a new per-trial setting is one settings
field, one field and builder line here, and the line of the loop that uses it. Standard
library only: the spec is pickled to trials and Train workers (`tune.with_parameters`), and
nothing here loads torch.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.core.resources import TrialPlan
    from jobs.core.settings import Settings


@dataclass(frozen=True)
class DataSpec:
    """Which images a Trainer loads: the dataset's folder and name, and the CI-sized limits."""

    data_dir: str
    dataset: str
    train_limit: int | None = None
    val_limit: int | None = None


def config_key(config: Mapping[str, Any]) -> int:
    """A number that names a trial by its config: the same across retries, restores and
    `restart_errored` (which gives an errored trial a new trial id, tune/experiment/trial.py
    Trial.reset)."""
    return zlib.crc32(json.dumps(dict(config), sort_keys=True, default=str).encode())


def trial_seed(seed: int, per_trial: bool, config: Mapping[str, Any]) -> int:
    """SEED for every trial (TRIAL_SEEDS=shared), or SEED plus a number derived from the
    trial's config (per-trial): the same config always gets the same seed, also on resume."""
    if not per_trial:
        return seed
    return seed + config_key(config)


# The fields a trial's config never overrides: the data, the seed it derives from, where the
# loop runs and what the stage adds to it. Every other field is a hyperparameter that a search
# space may name (a new per-trial setting is one by default).
FIXED = frozenset(
    [
        "data",
        "seed",
        "per_trial_seed",
        "use_gpu",
        "cpus",
        "checkpoint",
        "fail_at_epoch",
        "experiment_dir",
    ]
)


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """What one training run reads. A Tune trial's config overrides the hyperparameters it
    names (`for_trial`); everything else comes from the settings and the trial plan."""

    data: DataSpec
    # Hyperparameters: the settings' values, or the trial config's where it has them.
    lr: float
    batch_size: int
    num_epochs: int
    # The model's and the batch order's seed; per_trial_seed derives it from the config.
    seed: int
    per_trial_seed: bool = False
    # Where it runs, from the trial plan: a GPU slot or not, and its torch threads (the
    # trial's CPUs unless TORCH_THREADS says fewer).
    use_gpu: bool = False
    cpus: int = 1
    # What a Tune trial does besides training: a checkpoint every epoch (checkpoint stage),
    # FAIL_AT_EPOCH's injected failure, remembered under experiment_dir.
    checkpoint: bool = False
    fail_at_epoch: int | None = None
    experiment_dir: str = ""

    def for_trial(self, config: Mapping[str, Any]) -> TrainingSpec:
        """This spec with a trial's hyperparameters (the fields the config names, FIXED
        aside) and the trial's seed, derived from the whole config under TRIAL_SEEDS=per-trial."""
        fields = {f.name for f in dataclasses.fields(self)} - FIXED
        chosen = {name: value for name, value in config.items() if name in fields}
        return dataclasses.replace(
            self, **chosen, seed=trial_seed(self.seed, self.per_trial_seed, config)
        )


def training_spec(settings: Settings, plan: TrialPlan, *, checkpoint: bool = False) -> TrainingSpec:
    """The one place settings become what the training loop reads."""
    return TrainingSpec(
        data=DataSpec(
            settings.data_dir, settings.dataset, settings.train_limit, settings.val_limit
        ),
        lr=settings.lr,
        batch_size=settings.batch_size,
        num_epochs=settings.num_epochs,
        seed=settings.seed,
        per_trial_seed=settings.trial_seeds == "per-trial",
        use_gpu=plan.use_gpu,
        cpus=settings.torch_threads or plan.cpus_per_trial,
        checkpoint=checkpoint,
        fail_at_epoch=settings.fail_at_epoch,
        experiment_dir=str(settings.experiment_dir),
    )
