"""Settings shared by every stage: read from environment variables, mirrored by flags.

The environment variable names are the project's interface: the README, the KubeRay
manifests and the tests all use them. Flags override the environment. Everything is
validated here, before any cluster work or any write, and a bad value ends the run with
one line on stderr (see ``jobs.cli``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

STAGES = ("baseline", "tune", "asha", "checkpoint", "train")
DATASETS = ("mnist", "fashion-mnist")
ACCELERATORS = ("auto", "gpu", "cpu")
METRICS = {"val_loss": "min", "loss": "min", "val_accuracy": "max"}
SHARED_STORAGE = Path("/mnt/cluster_storage")


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line meant for the user."""


def default_storage_path() -> str:
    """The shared volume when this machine has it mounted and writable, else ~/ray_results."""
    if SHARED_STORAGE.is_dir() and os.access(SHARED_STORAGE, os.W_OK):
        return str(SHARED_STORAGE)
    return str(Path.home() / "ray_results")


def default_data_dir() -> str:
    return str(Path.cwd() / "data")


# --- value parsers: each takes the raw string and the setting's name -------------------


def _int(minimum: int) -> Callable[[str, str], int]:
    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def _optional_int(minimum: int) -> Callable[[str, str], int | None]:
    inner = _int(minimum)

    def parse(raw: str, name: str) -> int | None:
        return None if raw == "" else inner(raw, name)

    return parse


def _positive_float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number > 0, got {raw}")
    return value


def _optional_positive_float(raw: str, name: str) -> float | None:
    return None if raw == "" else _positive_float(raw, name)


def _lr_points(raw: str, name: str) -> tuple[float, ...]:
    if raw.strip() == "":
        return ()
    return tuple(_positive_float(part.strip(), name) for part in raw.split(","))


def _choice(options: Sequence[str]) -> Callable[[str, str], str]:
    def parse(raw: str, name: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}; got {raw!r}")
        return value

    return parse


def _accelerator_type(raw: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", raw):
        raise ConfigError(f"{name} must be an accelerator name such as T4 or A10G, got {raw!r}")
    return raw


def _path(raw: str, name: str) -> str:
    if raw.strip() == "":
        raise ConfigError(f"{name} must not be empty")
    return str(Path(raw).expanduser().absolute())


def _address(raw: str, name: str) -> str | None:
    return raw.strip() or None


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


# --- the table of settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    field: str
    env: str | None
    flag: str
    parse: Callable[[str, str], Any]
    default: str | Callable[[], str]
    help: str
    stages: tuple[str, ...] = STAGES
    is_switch: bool = False


ALL_TUNE = ("tune", "asha", "checkpoint", "train")
TUNE_ONLY = ("tune", "asha", "checkpoint")

OPTIONS: tuple[Option, ...] = (
    Option(
        "storage_path",
        "STORAGE_PATH",
        "--storage-path",
        _path,
        default_storage_path,
        "where experiments are written (default /mnt/cluster_storage if writable, "
        "else ~/ray_results)",
    ),
    Option(
        "data_dir",
        "DATA_DIR",
        "--data-dir",
        _path,
        default_data_dir,
        "folder holding the four IDX files, or a torchvision-style root (default ./data)",
    ),
    Option(
        "dataset",
        "DATASET",
        "--dataset",
        _choice(DATASETS),
        "mnist",
        "mnist or fashion-mnist (same format, same code path)",
    ),
    Option(
        "accelerator",
        "ACCELERATOR",
        "--accelerator",
        _choice(ACCELERATORS),
        "auto",
        "auto (GPU when the Ray cluster has GPUs), gpu or cpu",
    ),
    Option(
        "accelerator_type",
        "ACCELERATOR_TYPE",
        "--accelerator-type",
        _accelerator_type,
        "T4",
        "GPU model trials are pinned to in GPU mode",
    ),
    Option(
        "num_samples",
        "TUNE_NUM_SAMPLES",
        "--num-samples",
        _optional_int(1),
        "",
        "number of trials (default: the stage's walkthrough value)",
        ALL_TUNE,
    ),
    Option(
        "num_epochs",
        "TUNE_NUM_EPOCHS",
        "--num-epochs",
        _optional_int(1),
        "",
        "epochs per trial (default: the stage's walkthrough value)",
    ),
    Option(
        "max_concurrent",
        "TUNE_MAX_CONCURRENT",
        "--max-concurrent",
        _optional_int(1),
        "",
        "cap on trials running at once (default: sized from the cluster)",
        ALL_TUNE,
    ),
    Option(
        "train_limit",
        "TRAIN_LIMIT",
        "--train-limit",
        _optional_int(1),
        "",
        "use only the first N training images (CI-sized runs)",
    ),
    Option(
        "val_limit",
        "VAL_LIMIT",
        "--val-limit",
        _optional_int(1),
        "",
        "use only the first N validation images",
    ),
    Option("batch_size", "BATCH_SIZE", "--batch-size", _int(1), "128", "mini-batch size"),
    Option("lr", "LR", "--lr", _positive_float, "1e-3", "learning rate", ("baseline",)),
    Option(
        "lr_points",
        "TUNE_LR_POINTS",
        "--lr-points",
        _lr_points,
        "",
        "comma-separated learning rates tried first, before the search samples",
        ALL_TUNE,
    ),
    Option(
        "metric",
        "TUNE_METRIC",
        "--metric",
        _choice(tuple(METRICS)),
        "val_loss",
        "metric trials are ranked on: val_loss, loss or val_accuracy",
        ALL_TUNE,
    ),
    Option("seed", "SEED", "--seed", _int(0), "0", "seed for the search and the model"),
    Option(
        "ray_address",
        "RAY_ADDRESS",
        "--address",
        _address,
        "",
        "Ray cluster to connect to (default: start a local one)",
    ),
    Option(
        "gpu_wait_s",
        "GPU_WAIT_S",
        "--gpu-wait-s",
        _int(0),
        "600",
        "with ACCELERATOR=gpu on a remote cluster: how long to wait for a GPU node "
        "to join before failing",
    ),
    Option(
        "stop_all_at",
        "STOP_ALL_AT",
        "--stop-all-at",
        _optional_positive_float,
        "",
        "the walkthrough's custom Stopper: end the whole experiment once any trial's "
        "metric reaches this value (walkthrough: 0.05)",
        ("checkpoint",),
    ),
    Option(
        "stop_trial_worse_than",
        "STOP_TRIAL_WORSE_THAN",
        "--stop-trial-worse-than",
        _optional_positive_float,
        "",
        "the Stopper's per-trial rule: stop a trial whose metric is still worse than this "
        "after STOP_TRIAL_AFTER epochs (walkthrough: 1.0)",
        ("checkpoint",),
    ),
    Option(
        "stop_trial_after",
        "STOP_TRIAL_AFTER",
        "--stop-trial-after",
        _int(1),
        "5",
        "epochs before STOP_TRIAL_WORSE_THAN applies",
        ("checkpoint",),
    ),
    Option(
        "trial_time_limit_s",
        "TRIAL_TIME_LIMIT_S",
        "--trial-time-limit-s",
        _optional_positive_float,
        "",
        "stop each trial after this many seconds",
        ("checkpoint",),
    ),
    Option(
        "time_budget_s",
        "TIME_BUDGET_S",
        "--time-budget-s",
        _optional_positive_float,
        "",
        "stop the whole experiment after this many seconds",
        ("checkpoint",),
    ),
    Option(
        "fail_at_epoch",
        "FAIL_AT_EPOCH",
        "--fail-at-epoch",
        _optional_int(1),
        "",
        "fault injection: every trial raises once when it reaches this epoch",
        TUNE_ONLY,
    ),
    Option(
        "lock_wait_s",
        "LOCK_WAIT_S",
        "--lock-wait-s",
        _positive_float,
        "120",
        "how long to wait for another run of this stage on the same storage to end",
    ),
    Option(
        "fresh",
        None,
        "--fresh",
        _flag,
        "",
        "start over: archive an existing experiment of this stage instead of resuming it",
        ALL_TUNE,
        is_switch=True,
    ),
    Option(
        "resume",
        None,
        "--resume",
        _flag,
        "",
        "require an existing experiment of this stage and resume it",
        ALL_TUNE,
        is_switch=True,
    ),
    Option(
        "dry_run",
        None,
        "--dry-run",
        _flag,
        "",
        "print the resolved configuration and exit",
        is_switch=True,
    ),
)


@dataclass(frozen=True)
class StageDefaults:
    """The walkthrough's numbers for one stage."""

    num_epochs: int
    num_samples: int = 1
    max_concurrent: int | None = None


STAGE_DEFAULTS: dict[str, StageDefaults] = {
    "baseline": StageDefaults(num_epochs=2),
    "tune": StageDefaults(num_epochs=3, num_samples=4),
    "asha": StageDefaults(num_epochs=8, num_samples=4),
    "checkpoint": StageDefaults(num_epochs=2, num_samples=4),
    "train": StageDefaults(num_epochs=3, num_samples=2, max_concurrent=2),
}


@dataclass(frozen=True)
class Settings:
    stage: str
    storage_path: str
    data_dir: str
    dataset: str
    accelerator: str
    accelerator_type: str
    num_samples: int
    num_epochs: int
    max_concurrent: int | None
    train_limit: int | None
    val_limit: int | None
    batch_size: int
    lr: float
    lr_points: tuple[float, ...]
    metric: str
    seed: int
    ray_address: str | None
    gpu_wait_s: int
    stop_all_at: float | None
    stop_trial_worse_than: float | None
    stop_trial_after: int
    trial_time_limit_s: float | None
    time_budget_s: float | None
    fail_at_epoch: int | None
    lock_wait_s: float
    fresh: bool
    resume: bool
    dry_run: bool

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
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ConfigError line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def build_parser(stage: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"python -m jobs.{stage}",
        description=f"Run the '{stage}' stage. Every option also reads the environment "
        "variable shown; flags win over the environment.",
    )
    for opt in OPTIONS:
        if stage not in opt.stages:
            continue
        source = f" [env {opt.env}]" if opt.env else ""
        if opt.is_switch:
            parser.add_argument(
                opt.flag, dest=opt.field, action="store_true", help=opt.help + source
            )
        else:
            parser.add_argument(
                opt.flag, dest=opt.field, metavar=opt.field.upper(), help=opt.help + source
            )
    return parser


def resolve(
    stage: str,
    argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Parse flags and environment into validated settings. Raises ConfigError."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    env = os.environ if env is None else env
    parser = build_parser(stage)
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        raise ConfigError(f"unknown argument {unknown[0]!r} (see --help)")
    values: dict[str, Any] = {"stage": stage}
    for opt in OPTIONS:
        default = opt.default() if callable(opt.default) else opt.default
        if stage not in opt.stages:  # not this stage's: the table's default, unread
            values[opt.field] = opt.parse(default, opt.env or opt.flag)
            continue
        given = getattr(args, opt.field)
        if opt.is_switch:
            values[opt.field] = bool(given)
            continue
        if given is not None:
            raw, name = given, opt.flag
        elif opt.env and opt.env in env:
            raw, name = env[opt.env], opt.env
        else:
            raw, name = default, opt.env or opt.flag
        values[opt.field] = opt.parse(str(raw), name)

    # Unset counts take the walkthrough's numbers for this stage.
    for key, value in dataclasses.asdict(STAGE_DEFAULTS[stage]).items():
        if values[key] is None:
            values[key] = value
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(s: Settings) -> None:
    if s.fresh and s.resume:
        raise ConfigError("--fresh and --resume contradict each other; pass one of them")
    if s.fail_at_epoch is not None and s.fail_at_epoch > s.num_epochs:
        raise ConfigError(
            f"FAIL_AT_EPOCH={s.fail_at_epoch} is past the last epoch ({s.num_epochs})"
        )


# --- checks of the outside world, run before any cluster work ---------------------------


def check_storage_writable(path: str) -> None:
    """Fail unless `path` exists as a writable folder or could be created as one."""
    target = Path(path)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"STORAGE_PATH {path} is not a folder ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"STORAGE_PATH {path} is not writable (no write access to {probe})")


def check_address_reachable(address: str | None, timeout_s: float = 3.0) -> None:
    """Fail fast with one line if RAY_ADDRESS names a host:port nobody listens on."""
    if address is None or address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if host is None or port is None:
        raise ConfigError(f"RAY_ADDRESS {address!r} is not host:port or a URL with a port")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise ConfigError(
            f"RAY_ADDRESS {address} is unreachable ({exc.strerror or exc}); "
            "start the cluster or port-forward first"
        ) from None
