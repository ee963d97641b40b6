"""Settings: each declared once, as a keyword-only dataclass field whose metadata says how
it is read (environment variable, flag, parser), what it means, and which stages use it.

The environment variable names are the project's interface: the README, the KubeRay
manifests and the tests use them. Flags override the environment. `--help`, `--dry-run`,
the environment `make submit` forwards and the README's settings table are all generated
from these fields (`python -m jobs.core.settings` prints the table). Every value is parsed
and validated here, before any cluster work or any write; a bad one ends the run with one
`error:` line (see `jobs.core.cli`).

A stage adds settings of its own the same way, in its own file (the checkpoint stage's
Stopper and time limits): a dataclass of `setting(...)` fields passed as `Stage.options`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlparse

if TYPE_CHECKING:
    from jobs.core.stage import Stage

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


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line meant for the user."""


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


# --- value parsers: each takes the raw string and the name it came from -----------------


def integer(minimum: int) -> Callable[[str, str], int]:
    def parse(raw: str, name: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """Empty means unset (None)."""

    def parse_optional(raw: str, name: str) -> Any:
        return None if raw.strip() == "" else parse(raw, name)

    return parse_optional


def positive_float(raw: str, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number > 0, got {raw}")
    return value


def lr_list(raw: str, name: str) -> tuple[float, ...]:
    if raw.strip() == "":
        return ()
    return tuple(positive_float(part.strip(), name) for part in raw.split(","))


def choice(options: Sequence[str]) -> Callable[[str, str], str]:
    def parse(raw: str, name: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}; got {raw!r}")
        return value

    return parse


def accelerator_type(raw: str, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", raw):
        raise ConfigError(f"{name} must be an accelerator name such as T4 or A10G, got {raw!r}")
    return raw


def path(raw: str, name: str) -> str:
    if raw.strip() == "":
        raise ConfigError(f"{name} must not be empty")
    if "\0" in raw:
        raise ConfigError(f"{name} must not contain a NUL byte")
    return str(Path(raw).expanduser().absolute())


def ray_address(raw: str, name: str) -> str | None:
    """Empty (start a local cluster), `auto`, host:port, or an http(s)/ray:// URL with a port."""
    value = raw.strip()
    if value in ("", "auto", "local"):
        return value or None
    scheme = value.split("://", 1)[0] if "://" in value else None
    if scheme not in (None, "http", "https", "ray"):
        raise ConfigError(
            f"{name} must be host:port or an http(s):// or ray:// URL, got {raw!r} "
            f"(unknown scheme {scheme}://)"
        )
    try:
        parsed = urlparse(value if scheme else f"tcp://{value}")
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or port is None:
        raise ConfigError(f"{name} must be host:port or a URL with a port, got {raw!r}")
    return value


def node_prices(raw: str, name: str) -> dict[str, Any] | None:
    """Empty (no prices), or JSON: {"gpu_node": {"on_demand": USD, "spot": USD}, "head_node":
    {...}, "source": "..."} in USD per node-hour; null where a price is not known."""
    if raw.strip() == "":
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be JSON, got {raw[:60]!r}") from None
    shape = '{"gpu_node": {"on_demand": 0.54, "spot": 0.15}, "head_node": {...}, "source": "..."}'
    if not isinstance(data, dict) or not isinstance(data.get("source", ""), str):
        raise ConfigError(f"{name} must be a JSON object like {shape}")
    for node in ("gpu_node", "head_node"):
        prices = data.get(node)
        if not isinstance(prices, dict) or set(prices) - {"on_demand", "spot"}:
            raise ConfigError(f"{name}: {node} must be an object of on_demand and spot prices")
        for kind, value in prices.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if value is not None and (not number or not 0 <= value < float("inf")):
                raise ConfigError(f"{name}: {node}.{kind} must be a price >= 0 or null")
    return data


def flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


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


# --- reading them ---------------------------------------------------------------------------


def _stage_classes(stage: Stage) -> list[type]:
    return [Settings] + ([stage.options] if stage.options is not None else [])


def applies(s: Setting, stage: Stage, cls: type) -> bool:
    return cls is not Settings or s.scope is Scope.ALL or s.scope in stage.scopes


def env_names(stage: Stage) -> list[str]:
    """The environment variables this stage reads (what `make submit` forwards)."""
    return [
        s.env
        for cls in _stage_classes(stage)
        for _, s in settings_fields(cls)
        if s.env and applies(s, stage, cls)
    ]


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ConfigError line, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def _shown(f: dataclasses.Field[Any], s: Setting, stage: Stage | None = None) -> str:
    if stage is not None and f.name in stage.defaults:
        return str(stage.defaults[f.name])
    if s.shown is not None:
        return s.shown
    if f.default is None or f.default == ():
        return "unset"
    return str(f.default).lower() if isinstance(f.default, bool) else str(f.default)


def build_parser(stage: Stage) -> argparse.ArgumentParser:
    parser = Parser(
        prog=f"python -m jobs.{stage.name}",
        description=f"Run the '{stage.name}' stage (walkthrough part {stage.part}). Every "
        "option also reads the environment variable shown; flags win over the environment.",
    )
    for cls in _stage_classes(stage):
        for f, s in settings_fields(cls):
            if not applies(s, stage, cls):
                continue
            if s.switch:
                parser.add_argument(s.flag, dest=f.name, action="store_true", help=s.help)
                continue
            parser.add_argument(
                s.flag,
                dest=f.name,
                metavar=f.name.upper(),
                help=f"{s.help} [env {s.env}; default: {_shown(f, s, stage)}]",
            )
    return parser


def _read(
    cls: type, stage: Stage, args: argparse.Namespace, env: Mapping[str, str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f, s in settings_fields(cls):
        if not applies(s, stage, cls):
            continue  # not this stage's: the field's default, unread
        given = getattr(args, f.name)
        if s.switch:
            values[f.name] = bool(given)
        elif given is not None:
            values[f.name] = s.parse(str(given), s.flag)
        elif s.env and s.env in env:
            values[f.name] = s.parse(env[s.env], s.env)
        elif f.name in stage.defaults:
            values[f.name] = stage.defaults[f.name]
    return values


def resolve(
    stage: Stage,
    argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Parse flags and environment into validated settings. Raises ConfigError."""
    env = os.environ if env is None else env
    args, unknown = build_parser(stage).parse_known_args(list(argv))
    if unknown:
        raise ConfigError(f"unknown argument {unknown[0]!r} (see --help)")
    options = None
    if stage.options is not None:
        options = stage.options(**_read(stage.options, stage, args, env))
    return Settings(stage=stage.name, options=options, **_read(Settings, stage, args, env))


# --- checks of the outside world, run before any cluster work ---------------------------


def check_storage_writable(path: str) -> None:
    """Fail unless `path` is a writable folder or could be created as one.

    Walks up to the nearest existing ancestor and proves it writable by creating and removing
    an empty temporary folder there (permission bits lie to root and to read-only mounts).
    """
    import tempfile

    target = Path(path)
    missing = []
    probe = target
    while not os.path.lexists(probe) and probe.parent != probe:
        missing.append(probe.name)
        probe = probe.parent
    for name in missing:
        if len(name.encode()) > 255:
            raise ConfigError(f"STORAGE_PATH {path} has a folder name over 255 bytes")
    if os.path.islink(probe) and not probe.exists():
        raise ConfigError(f"STORAGE_PATH {path} is under a broken symlink ({probe})")
    if not probe.is_dir():
        raise ConfigError(f"STORAGE_PATH {path} is not a folder ({probe} is a file)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=probe))
    except OSError as exc:
        raise ConfigError(
            f"STORAGE_PATH {path} is not writable ({probe}: {exc.strerror or exc})"
        ) from None


def check_address_reachable(address: str | None, timeout_s: float = 3.0) -> None:
    """Fail fast with one line if RAY_ADDRESS names a host:port nobody listens on."""
    import socket

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


# --- the README's settings table --------------------------------------------------------------


def readme_table(stages: Sequence[Stage]) -> str:
    """The settings of every stage as a Markdown table (the README's, kept in step by a test)."""
    rows = ["| Variable | Flag | Default | Stages | Meaning |", "|---|---|---|---|---|"]
    seen: set[str] = set()
    for cls in [Settings, *(s.options for s in stages if s.options is not None)]:
        for f, s in settings_fields(cls):
            if s.switch or f.name in seen:
                continue
            seen.add(f.name)
            users = [st.name for st in stages if applies(s, st, cls) and cls in _stage_classes(st)]
            shown = "all" if len(users) == len(stages) else ", ".join(users)
            rows.append(f"| `{s.env}` | `{s.flag}` | {_shown(f, s)} | {shown} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    # Through the imported module: run as __main__, this file's classes are other objects.
    from jobs import registry
    from jobs.core import settings

    print(settings.readme_table([registry.load(name) for name in registry.names()]))
    sys.exit(0)
