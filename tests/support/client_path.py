"""A fresh interpreter as the client venv would be: the training stack made unimportable."""

from __future__ import annotations

import subprocess
import sys

from tests.support.runs import REPO, clean_env

# The training stack: never imported by the client tools.
HEAVY = ("torch", "torchvision", "optuna", "matplotlib")
# Importable here (the dev venv) but not in the client venv: a subprocess that cannot import
# them is the client venv as far as the project's code can tell.
ABSENT = (*HEAVY, "triton", "numpy", "pandas", "pyarrow", "fsspec", "tensorboardX", "PIL")
RECORD = "import json, sys; print(json.dumps(sorted(m for m in sys.modules)), file=sys.stderr)"


def without(*absent: str) -> str:
    """Code that makes a fresh interpreter fail to import `absent`, as if not installed."""
    return f"""
import importlib.abc, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {set(absent)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (client venv)", name=name)
sys.meta_path.insert(0, Absent())
"""


WITHOUT_TRAINING_STACK = without(*ABSENT)


def python(code: str, *argv: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(RAY_AUTH_MODE="token", **env),
    )
