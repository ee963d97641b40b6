"""The settings, each declared once as a dataclass field that says how it is read.

A keyword-only field whose metadata gives the environment variable, the flag, the parser
(from `jobs.core.parsers`), what it means, and which stages use it.

The environment variable names are the project's interface: the README, the KubeRay
manifests and the tests use them. Flags override the environment. `--help`, `--dry-run`,
the environment `make submit` forwards (`jobs.core.reading`) and jobs/README.md's settings table
(`python -m jobs.settings_table`) are all generated from these fields. Every value is parsed
and validated before any cluster work or any write; a bad one ends the run with one `error:`
line (see `jobs.core.cli`).

A stage adds settings of its own the same way, in its own file (the checkpoint stage's
Stopper and time limits): a dataclass of `setting(...)` fields passed as `Stage.options`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from jobs.core.parsers import (
    ConfigError,
    accelerator_type,
    choice,
    flag,
    gpu_share,
    integer,
    lr_list,
    node_prices,
    optional,
    path,
    positive_float,
    ray_address,
)

DATASETS = ("mnist", "fashion-mnist")
ACCELERATORS = ("auto", "gpu", "cpu")
METRICS = {"val_loss": "min", "loss": "min", "val_accuracy": "max"}
SHARED_STORAGE = Path("/mnt/cluster_storage")
TRIAL_SEEDS = ("shared", "per-trial")
MIB = 1024**2
# A memory reservation is a measured peak plus this share, rounded up to 64 MiB.
MEMORY_HEADROOM = 0.25


def reservation_mib(peak_mib: float) -> int:
    """What to reserve for a process whose measured peak RSS is `peak_mib`."""
    return int(-(-peak_mib * (1 + MEMORY_HEADROOM) // 64) * 64)


# reservation_mib of the larger peak RSS of a `tune` trial and a `train` worker at the
# default data size (the whole splits), measured by `make bench-memory` into
# jobs/bench/results/memory.json; tests/unit/test_resources.py keeps the two in step.
TRIAL_MEMORY_MIB = 1984
# The same for the `train` stage's trial, which only drives its Train workers.
TRAIN_DRIVER_MEMORY_MIB = 1088

# Under Spot (SPOT=true), the retries a trial gets on top of its stage's own: Tune 2.60's
# FailureConfig counts a trial's failures without telling a lost node from the trial's own
# error, so the budget for reclaims is added to what the stage allows for errors (0 for
# tune and asha, 2 for checkpoint, 1 for train's trial). A retry resumes from the trial's
# last checkpoint (saved every epoch under Spot): a reclaim costs at most the epoch in flight.
SPOT_RETRIES = 3


class Scope(Enum):
    """Which stages read a setting. A stage declares the scopes it has (`Stage.scopes`)."""

    ALL = "every stage"
    SINGLE = "single-run stages (baseline)"
    TUNE = "Tune stages"
    TRIAL = "stages whose trials run the shared trial loop (tune, asha, checkpoint)"


@dataclass(frozen=True)
class Setting:
    """How one dataclass field is read; stored in the field's metadata."""

    help: str
    parse: Callable[[str, str], Any]
    env: str | None = None
    flag: str = ""  # default: --<field-name>
    scope: Scope = Scope.ALL
    switch: bool = False  # a flag without a value, never read from the environment
    shown: str | None = None  # the default as --help and the README say it, when computed


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    **how: Any,
) -> Any:
    """A settings field: `default` is the parsed value used when nothing sets it."""
    meta = {"setting": Setting(**how)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def switch(help: str, scope: Scope = Scope.ALL) -> Any:
    """A flag without a value (--fresh), off unless given; never read from the environment."""
    return setting(False, help=help, parse=flag, switch=True, scope=scope)


def settings_fields(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    for f in dataclasses.fields(cls):
        if "setting" in f.metadata:
            s = f.metadata["setting"]
            yield f, s if s.flag else dataclasses.replace(s, flag="--" + f.name.replace("_", "-"))


def default_storage_path() -> str:
    """The shared volume when this machine has it mounted and writable, else ~/ray_results."""
    if SHARED_STORAGE.is_dir() and os.access(SHARED_STORAGE, os.W_OK):
        return str(SHARED_STORAGE)
    return str(Path.home() / "ray_results")


def experiment_dir(stage: str, env: Mapping[str, str]) -> Path:
    """<STORAGE_PATH>/<stage> as a run of that stage would resolve it, without loading it."""
    raw = env.get("STORAGE_PATH")
    return Path(path(raw, "STORAGE_PATH") if raw is not None else default_storage_path()) / stage


def default_data_dir() -> str:
    return str(Path.cwd() / "data")


# --- the settings ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting the shared machinery reads; `options` holds the stage's own."""

    stage: str
    storage_path: str = setting(
        default_factory=default_storage_path,
        env="STORAGE_PATH",
        parse=path,
        shown="/mnt/cluster_storage if writable, else ~/ray_results",
        help="where experiments are written",
    )
    data_dir: str = setting(
        default_factory=default_data_dir,
        env="DATA_DIR",
        parse=path,
        shown="./data",
        help="folder holding the four IDX files, or a torchvision-style root",
    )
    dataset: str = setting(
        "mnist",
        env="DATASET",
        parse=choice(DATASETS),
        help="mnist or fashion-mnist (same format, same code path)",
    )
    accelerator: str = setting(
        "auto",
        env="ACCELERATOR",
        parse=choice(ACCELERATORS),
        help="auto (GPU when the Ray cluster has GPUs), gpu or cpu",
    )
    accelerator_type: str = setting(
        "T4",
        env="ACCELERATOR_TYPE",
        parse=accelerator_type,
        help="GPU model trials are pinned to in GPU mode",
    )
    gpus_per_trial: float = setting(
        1.0,
        env="GPUS_PER_TRIAL",
        parse=gpu_share,
        help="each trial's share of a GPU in GPU mode: 1 a whole one, 0.5 two trials per GPU, "
        "0.25 four (a T4 pod's 3 CPUs fit 3); Ray packs them; train refuses a share (NCCL "
        "needs a GPU per Train worker)",
    )
    num_samples: int = setting(
        1,
        env="TUNE_NUM_SAMPLES",
        parse=integer(1),
        scope=Scope.TUNE,
        shown="the stage's walkthrough value",
        help="number of trials",
    )
    num_epochs: int = setting(
        1,
        env="TUNE_NUM_EPOCHS",
        parse=integer(1),
        shown="the stage's walkthrough value",
        help="epochs per trial",
    )
    max_concurrent: int | None = setting(
        None,
        env="TUNE_MAX_CONCURRENT",
        parse=optional(integer(1)),
        scope=Scope.TUNE,
        shown="CPU mode: trials or CPUs, the fewer; GPU mode: none (the GPUs limit); train: 2",
        help="cap on trials running at once",
    )
    train_limit: int | None = setting(
        None,
        env="TRAIN_LIMIT",
        parse=optional(integer(1)),
        shown="all 60000",
        help="use only the first N training images (CI-sized runs)",
    )
    val_limit: int | None = setting(
        None,
        env="VAL_LIMIT",
        parse=optional(integer(1)),
        shown="all 10000",
        help="use only the first N validation images",
    )
    batch_size: int = setting(128, env="BATCH_SIZE", parse=integer(1), help="mini-batch size")
    torch_threads: int | None = setting(
        None,
        env="TORCH_THREADS",
        parse=optional(integer(1)),
        shown="the CPUs the trial (in train: each Train worker) was given",
        help="torch's intra-op threads in each trial or Train worker: fewer where other "
        "processes share the cores (make test sets 1: its two workers share two cores)",
    )
    lr: float = setting(
        1e-3, env="LR", parse=positive_float, scope=Scope.SINGLE, help="learning rate"
    )
    lr_points: tuple[float, ...] = setting(
        (),
        env="TUNE_LR_POINTS",
        parse=lr_list,
        scope=Scope.TUNE,
        shown="none",
        help="comma-separated learning rates tried first, before the search samples",
    )
    warm_start: str | None = setting(
        None,
        env="WARM_START",
        parse=optional(path),
        scope=Scope.TUNE,
        shown="none",
        help="an earlier run's folder (<stage>, <stage>.archived-<time>, or a results/k8s copy) "
        "whose trials an Optuna search (asha) starts from as already evaluated: completed ones "
        "with their last metric, early-stopped ones as pruned; a fresh experiment only; the "
        "random-search stages refuse it",
    )
    metric: str = setting(
        "val_loss",
        env="TUNE_METRIC",
        parse=choice(tuple(METRICS)),
        scope=Scope.TUNE,
        help="metric trials are ranked on: val_loss, loss or val_accuracy",
    )
    seed: int = setting(0, env="SEED", parse=integer(0), help="seed for the search and the model")
    trial_seeds: str = setting(
        "shared",
        env="TRIAL_SEEDS",
        parse=choice(TRIAL_SEEDS),
        scope=Scope.TUNE,
        help="shared: every trial starts from SEED (same initial weights and batch order, so "
        "trials differ only in their hyperparameters); per-trial: SEED plus a number derived "
        "from the trial's config",
    )
    trial_memory_mib: int = setting(
        TRIAL_MEMORY_MIB,
        env="TRIAL_MEMORY_MIB",
        parse=integer(0),
        help="memory each trial (in train: each Train worker; the trial driving them reserves "
        f"{TRAIN_DRIVER_MEMORY_MIB}) reserves in Ray, as the walkthrough's Part 4 does: the "
        "peak RSS measured at the default data size plus a quarter (make bench-memory); "
        "0: no reservation at all",
    )
    ray_address: str | None = setting(
        None,
        env="RAY_ADDRESS",
        flag="--address",
        parse=ray_address,
        shown="start a local cluster",
        help="Ray cluster to connect to: host:port, auto, or a ray:// URL",
    )
    gpu_wait_s: int = setting(
        1800,
        env="GPU_WAIT_S",
        parse=integer(0),
        help="with ACCELERATOR=gpu on a remote cluster: how long to wait for a GPU node "
        "to join before failing; covers a cold T4 node from zero (boot, driver, image "
        "pull: 5-20 min); the cloud manifests set their variant's cold_start_s.t4",
    )
    node_prices: Mapping[str, Any] | None = setting(
        None,
        env="NODE_PRICES",
        parse=node_prices,
        shown="none (the cloud manifests set their values file's)",
        help='USD per node-hour that results.json prices the run at, as JSON: {"gpu_node": '
        '{"on_demand": .., "spot": ..}, "head_node": {..}, "source": ".."}; null where unknown',
    )
    spot: bool = setting(
        False,
        env="SPOT",
        parse=flag,
        scope=Scope.TUNE,
        shown="false (the cloud manifests set their values file's `spot`)",
        help="the trials run on Spot nodes, which the provider may take back: every Tune "
        "stage then saves a checkpoint each epoch (the latest kept) and each trial may be "
        f"retried from it {SPOT_RETRIES} more times than the stage allows for its own failures",
    )
    fail_at_epoch: int | None = setting(
        None,
        env="FAIL_AT_EPOCH",
        parse=optional(integer(1)),
        scope=Scope.TRIAL,
        shown="off",
        help="fault injection: each trial raises the first time it reaches this epoch and "
        "never again (remembered in <experiment>/injected_failures), so a retry or --resume "
        "gets past it",
    )
    lock_wait_s: float = setting(
        120.0,
        env="LOCK_WAIT_S",
        parse=positive_float,
        help="how long to wait for another run of this stage on the same storage to end",
    )
    fresh: bool = switch(
        "start over: archive an existing experiment of this stage instead of resuming it",
        scope=Scope.TUNE,
    )
    resume: bool = switch(
        "require an existing experiment of this stage and resume it", scope=Scope.TUNE
    )
    dry_run: bool = switch("print the resolved configuration and exit")
    options: object | None = None  # the stage's own settings (Stage.options), or None

    def __post_init__(self) -> None:
        if self.fresh and self.resume:
            raise ConfigError("--fresh and --resume contradict each other; pass one of them")
        if self.fail_at_epoch is not None and self.fail_at_epoch > self.num_epochs:
            raise ConfigError(
                f"FAIL_AT_EPOCH={self.fail_at_epoch} is past the last epoch ({self.num_epochs})"
            )

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    @property
    def experiment_dir(self) -> Path:
        return Path(self.storage_path) / self.stage

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mode"] = self.mode
        data["experiment_dir"] = str(self.experiment_dir)
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True, default=str)
