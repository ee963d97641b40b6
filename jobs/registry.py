"""The stages, in walkthrough order: one line each, naming the module that defines it.

Everything that lists stages reads this: the settings (`--help`, README table), the
manifest renderer (jobs/kube/render.py), the Makefile (`python3 -m jobs.registry`), `make submit`
and the tests. Adding a stage is a new file jobs/<name>.py defining `STAGE = Stage(...)`
plus one line here. Standard library only: the Makefile runs it with the system Python.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import sys
import types
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
    """The stage's `STAGE` object (imports its module: Ray, torch)."""
    if name not in STAGES:
        raise UnknownStage(f"unknown stage {name!r}; choose one of {', '.join(names())}")
    return importlib.import_module(STAGES[name]).STAGE


# The arguments of a stage file's `STAGE = Stage(...)` that a submission to a remote cluster
# reads (not `run` or `preflight`: the job runs them, in the image), and the modules besides
# the standard library that what they use may import (no Ray, no torch).
DECLARED_ARGS = ("name", "part", "defaults", "scopes", "options", "kubernetes")
DECLARATION_IMPORTS = ("jobs.core.settings", "jobs.core.stage", "jobs.core.parsers")


def declared(name: str) -> Stage:
    """The stage's declaration read from its file without importing the file.

    A submission to a remote cluster resolves and checks the stage's settings and forwards
    its environment variables, but runs nothing of the stage on this machine. Importing the
    stage file would need Ray Tune and torch, which the workstation's client venv
    (.ci/lock/client.txt) lacks, so only the DECLARED_ARGS of its `STAGE = Stage(...)` are
    evaluated, with the definitions they use (the checkpoint stage's options class). Those
    may import only the standard library and DECLARATION_IMPORTS; anything else is an error.
    The manifest renderer reads `kubernetes` from it too. tests/unit/test_client_path.py
    checks the result against the imported STAGE for every stage.
    """
    if name not in STAGES:
        raise UnknownStage(f"unknown stage {name!r}; choose one of {', '.join(names())}")
    module = STAGES[name]
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), spec.origin)
    defined: dict[str, ast.stmt] = {}
    imported: dict[str, ast.Import | ast.ImportFrom] = {}
    call: ast.Call | None = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    defined[target.id] = node
                    if target.id == "STAGE" and isinstance(node.value, ast.Call):
                        call = node.value
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                imported[(alias.asname or alias.name).split(".")[0]] = node
    if call is None or not (isinstance(call.func, ast.Name) and call.func.id == "Stage"):
        raise ValueError(f"{spec.origin}: no `STAGE = Stage(...)`")
    keywords = [kw for kw in call.keywords if kw.arg in DECLARED_ARGS]
    # The module-level definitions and imports those arguments use, and theirs.
    used: set[str] = set()
    kept: set[int] = set()
    todo: list[ast.AST] = [call.func, *(kw.value for kw in keywords)]
    while todo:
        for sub in ast.walk(todo.pop()):
            if not isinstance(sub, ast.Name) or sub.id in used:
                continue
            used.add(sub.id)
            node = defined.get(sub.id) or imported.get(sub.id)
            if node is not None and id(node) not in kept and sub.id != "STAGE":
                kept.add(id(node))
                todo.append(node)
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            body.append(node)
        elif id(node) in kept:
            if isinstance(node, ast.Import | ast.ImportFrom):
                source = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = (source or "").split(".")[0]
                allowed = source in DECLARATION_IMPORTS or top in sys.stdlib_module_names
                if getattr(node, "level", 0) or not allowed:
                    raise ValueError(
                        f"{spec.origin}:{node.lineno}: the Stage(...) declaration uses an import "
                        f"of {source!r}; a submission reads it without Ray or torch "
                        f"(standard library and {', '.join(DECLARATION_IMPORTS)} only)"
                    )
            body.append(node)
    run = ast.keyword("run", ast.Name("_runs_in_the_job", ast.Load()))
    declared = ast.copy_location(ast.Call(call.func, [], [*keywords, run]), call)
    body.append(ast.copy_location(ast.Assign([ast.Name("STAGE", ast.Store())], declared), call))
    namespace = types.ModuleType(module)
    namespace._runs_in_the_job = _runs_in_the_job  # type: ignore[attr-defined]
    # dataclasses look the module of a class up in sys.modules while building it.
    registered = sys.modules.setdefault(module, namespace) is namespace
    try:
        code = compile(ast.fix_missing_locations(ast.Module(body, [])), spec.origin, "exec")
        exec(code, namespace.__dict__)
    finally:
        if registered:
            del sys.modules[module]
    return namespace.STAGE


def _runs_in_the_job(settings: object) -> None:
    raise RuntimeError("a declared stage is submitted, not run here (registry.load runs it)")


def kubernetes_facts(name: str) -> dict[str, Any]:
    """The stage's facts for its manifests (jobs/kube/render.py), from its declaration: no Ray,
    no torch imported to read two integers."""
    return dataclasses.asdict(declared(name).kubernetes)


if __name__ == "__main__":
    print(" ".join(names()))
