"""The training spec: everything the training loop reads, built from the settings in one place.

`training_spec` builds what a stage's runs share; `TrainingSpec.for_trial` completes it with
one config's hyperparameters (a `TrialSpec`, what `Trainer` reads).

Every caller of `Trainer` (the baseline task, the Tune trial, each Ray Train worker, the CPU
benchmark) gets its spec from `training_spec` and its hyperparameters from a config, so a new
hyperparameter is one settings field, its name in HYPERPARAMETERS and a TrialSpec field here,
and the line of the loop that uses it. Standard
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


# The hyperparameters a trial's config sets, and the only ones: the walkthrough's
# `param_space` names exactly these (jobs.core.search.search_space), the baseline's config
# too, and `for_trial` refuses a config that misses one or names anything else. A new
# hyperparameter a search may set is a Settings field of the same name, an entry here and a
# TrialSpec field.
HYPERPARAMETERS = ("num_epochs", "batch_size", "lr")


def hyperparameters(settings: Settings) -> dict[str, Any]:
    """The settings' value of each hyperparameter: the baseline's config, and what a search
    space does not sample."""
    return {name: getattr(settings, name) for name in HYPERPARAMETERS}


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """What every training run of a stage shares: the data, the seed, where the loop runs and
    what the stage adds to it. `for_trial` adds one trial's hyperparameters (a TrialSpec)."""

    data: DataSpec
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

    def for_trial(self, config: Mapping[str, Any]) -> TrialSpec:
        """This spec with a trial's hyperparameters, all of them from its config (the one way
        they reach the loop), and the trial's seed: under TRIAL_SEEDS=per-trial derived from
        the config."""
        missing = [name for name in HYPERPARAMETERS if name not in config]
        unknown = sorted(set(config) - set(HYPERPARAMETERS))
        if missing or unknown:
            raise ValueError(
                f"a trial config must name exactly {', '.join(HYPERPARAMETERS)} "
                f"(jobs.core.training_spec.HYPERPARAMETERS): missing {missing or 'none'}, "
                f"unknown {unknown or 'none'}"
            )
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingSpec)}
        return TrialSpec(
            **{**shared, "seed": trial_seed(self.seed, self.per_trial_seed, config)},
            **{name: config[name] for name in HYPERPARAMETERS},
        )


@dataclass(frozen=True, kw_only=True)
class TrialSpec(TrainingSpec):
    """What one training run reads: the stage's spec and one config's HYPERPARAMETERS."""

    num_epochs: int
    batch_size: int
    lr: float


def training_spec(settings: Settings, plan: TrialPlan, *, checkpoint: bool = False) -> TrainingSpec:
    """The one place settings become what the training loop reads, but the hyperparameters
    (a trial's config, or the baseline's `hyperparameters(settings)`)."""
    return TrainingSpec(
        data=DataSpec(
            settings.data_dir, settings.dataset, settings.train_limit, settings.val_limit
        ),
        seed=settings.seed,
        per_trial_seed=settings.trial_seeds == "per-trial",
        use_gpu=plan.use_gpu,
        cpus=settings.torch_threads or plan.cpus_per_trial,
        checkpoint=checkpoint,
        fail_at_epoch=settings.fail_at_epoch,
        experiment_dir=str(settings.experiment_dir),
    )
