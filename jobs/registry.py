"""The stages, in walkthrough order: one line each, naming the module that defines it.

Everything that lists stages reads this: the settings (`--help`, README table), the
manifest renderer (jobs/kube/render.py), the Makefile (`python3 -m jobs.registry`), `make submit`
and the tests. Adding a stage is a new file jobs/<name>.py defining `STAGE = Stage(...)`
plus one line here. Standard library only: the Makefile runs it with the system Python.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.core.parsers import ConfigError  # standard library only, like this file

if TYPE_CHECKING:
    from jobs.core.stage import Stage

STAGES: dict[str, str] = {
    "baseline": "jobs.baseline",  # Part 1: plain PyTorch, one Ray task
    "tune": "jobs.tune",  # Part 2: Tune with random search
    "asha": "jobs.asha",  # Part 3: Optuna + ASHA
    "checkpoint": "jobs.checkpoint",  # Part 4: checkpoints, retries, resume
    "train": "jobs.train",  # Part 5: Ray Train inside Tune
}


class UnknownStage(ConfigError):
    """A stage name the registry does not list (one `error:` line, like any bad setting)."""


def names() -> tuple[str, ...]:
    return tuple(STAGES)


def named_stage(source: str) -> bool:
    """Whether a command's SOURCE names a stage (its folders under STORAGE_PATH) rather than
    a file or folder of that name (jobs.results, jobs.logs)."""
    return source in STAGES and not Path(source).exists()


def load(name: str) -> Stage:
    """The stage's `STAGE` object. Importing a stage module needs no Ray Tune, Ray Train or
    torch (they are imported inside the functions that run on the cluster), so the client
    venv reads a declaration the way the job does (tests/unit/test_client_path.py)."""
    if name not in STAGES:
        raise UnknownStage(f"unknown stage {name!r}; choose one of {', '.join(names())}")
    return importlib.import_module(STAGES[name]).STAGE


def kubernetes_facts(name: str) -> dict[str, Any]:
    """The stage's facts for its manifests (jobs/kube/render.py)."""
    return dataclasses.asdict(load(name).kubernetes)


if __name__ == "__main__":
    print(" ".join(names()))
