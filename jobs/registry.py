"""The stages, in walkthrough order: one line each, naming the module that defines it.

Everything that lists stages reads this: the settings (`--help`, README table), the
manifest renderer (k8s/render.py), the Makefile (`python3 -m jobs.registry`), `make submit`
and the tests. Adding a stage is a new file jobs/<name>.py defining `STAGE = Stage(...)`
plus one line here. Standard library only: the Makefile runs it with the system Python.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobs.core.stage import Stage

STAGES: dict[str, str] = {
    "baseline": "jobs.baseline",  # Part 1: plain PyTorch, one Ray task
    "tune": "jobs.tune",  # Part 2: Tune with random search
    "asha": "jobs.asha",  # Part 3: Optuna + ASHA
    "checkpoint": "jobs.checkpoint",  # Part 4: checkpoints, retries, resume
    "train": "jobs.train",  # Part 5: Ray Train inside Tune
}


class UnknownStage(KeyError):
    def __str__(self) -> str:
        return f"unknown stage {self.args[0]!r}; choose one of {', '.join(names())}"


def names() -> tuple[str, ...]:
    return tuple(STAGES)


def load(name: str) -> Stage:
    """The stage's `STAGE` object (imports its module: Ray, torch)."""
    if name not in STAGES:
        raise UnknownStage(name)
    module = sys.modules.get("__main__")
    if getattr(module, "__spec__", None) and module.__spec__.name == STAGES[name]:  # type: ignore[union-attr]
        return module.STAGE  # type: ignore[union-attr]  # run as python -m jobs.<name>
    return importlib.import_module(STAGES[name]).STAGE


if __name__ == "__main__":
    print(" ".join(names()))
