"""The project as a wheel: every module of jobs/ is in it and imports from it alone, and the
tests run without the settings of the shell that starts them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.runs import PROJECT_ENV, REPO, clean_env

MODULES = sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for p in (REPO / "jobs").rglob("*.py")
)


def test_a_wheel_holds_and_imports_every_module(tmp_path: Path) -> None:
    # Built from a copy: an in-tree build would leave build/ behind and reuse it next time.
    source = tmp_path / "src"
    shutil.copytree(REPO / "jobs", source / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=source,  # setuptools writes its build/ here, not in the checkout
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("ray_tune_k8s-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in MODULES:
        path = module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, module
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    code = (
        "import importlib, jobs\n"
        f"assert jobs.__file__.startswith({str(site)!r}), jobs.__file__\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=clean_env() | {"PYTHONPATH": str(site)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("name", ["TRIAL_SEEDS", "TRIAL_MEMORY_MIB", "TIME_BUDGET_S"])
def test_a_setting_in_the_shell_never_reaches_a_test_run(name: str, monkeypatch) -> None:
    monkeypatch.setenv(name, "1")
    assert name in PROJECT_ENV  # read from the settings' declarations, not a list by hand
    assert name not in clean_env()
