"""The dependency lock (.ci/lock/, `make lock`): it agrees with pyproject.toml, every entry
carries hashes, runtime and dev agree, the installed venv is exactly the lock, and the
image installs from it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.runs import REPO

LOCK = REPO / ".ci" / "lock"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.M)


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(n): v for n, v in PIN.findall(path.read_text())}


def declared() -> dict[str, dict[str, str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    out = {}
    for group, items in (
        ("runtime", project["dependencies"]),
        ("dev", project["optional-dependencies"]["dev"]),
        ("client", project["optional-dependencies"]["client"]),
    ):
        parsed = {}
        for item in items:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?==(\S+)", item)
            assert match, f"pyproject.toml pins every dependency exactly: {item}"
            parsed[canonicalize_name(match.group(1))] = match.group(3)
        out[group] = parsed
    return out


def test_the_lock_agrees_with_pyproject() -> None:
    groups = declared()
    runtime, dev = pins(LOCK / "runtime.txt"), pins(LOCK / "dev.txt")
    for name, version in groups["runtime"].items():
        assert runtime.get(name) == version, (
            f"{name}: pyproject {version}, lock {runtime.get(name)} (make lock)"
        )
    for name, version in {**groups["runtime"], **groups["dev"]}.items():
        assert dev.get(name) == version, (
            f"{name}: pyproject {version}, lock {dev.get(name)} (make lock)"
        )
    # The workstation's client extra: its own lock, at the versions the other groups pin.
    client = pins(LOCK / "client.txt")
    for name, version in groups["client"].items():
        assert client.get(name) == version, (
            f"{name}: pyproject {version}, client lock {client.get(name)} (make lock)"
        )
        assert dev.get(name) == version, f"{name}: client extra {version}, dev lock {dev.get(name)}"


def test_runtime_and_dev_locks_agree_on_every_version() -> None:
    runtime, dev = pins(LOCK / "runtime.txt"), pins(LOCK / "dev.txt")
    assert runtime and set(runtime) <= set(dev)
    assert {n: v for n, v in runtime.items() if dev[n] != v} == {}


@pytest.mark.parametrize("name", ["runtime.txt", "dev.txt", "client.txt"])
def test_every_locked_package_carries_hashes(name: str) -> None:
    text = (LOCK / name).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text)[1:]
    assert entries and all("--hash=sha256:" in e for e in entries)


def test_the_venv_is_exactly_the_lock() -> None:
    # The venv's own site-packages only: importing ray adds its vendored copies to sys.path.
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)
    }
    extra = set(installed) - set(pins(LOCK / "dev.txt")) - {"pip", "setuptools", "wheel"}
    assert not extra, f"installed but not locked: {sorted(extra)} (make lock, or remove them)"
    for name, version in pins(LOCK / "dev.txt").items():
        assert name in installed, f"{name} is locked but not installed (make install)"
        # torch reports its build as a local version (2.14.1+cu130); the lock pins 2.14.1.
        assert Version(installed[name]).public == Version(version).public, (
            f"{name}: installed {installed[name]}, locked {version} (make install)"
        )


def test_the_image_installs_from_the_lock_and_takes_torch_from_its_index(tmp_path) -> None:
    dockerfile = (REPO / "image" / "Dockerfile").read_text()
    assert "--require-hashes -r build/lock/runtime.txt" in dockerfile
    assert "--no-deps" in dockerfile and "deps.py --without-torch" in dockerfile
    # The image reads torch's pins with deps.py, laid out as the Dockerfile copies it.
    assert "deps.py --pin torch)" in dockerfile and "deps.py --pin torchvision)" in dockerfile
    (tmp_path / "build" / "lock").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "deps.py", tmp_path / "build" / "deps.py")
    shutil.copy(LOCK / "runtime.txt", tmp_path / "build" / "lock" / "runtime.txt")
    for name in ("torch", "torchvision"):
        pinned = subprocess.run(
            [sys.executable, "build/deps.py", "--pin", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert pinned == pins(LOCK / "runtime.txt")[name]
    rest = subprocess.run(
        [
            sys.executable,
            str(REPO / ".ci" / "deps.py"),
            "--without-torch",
            str(LOCK / "runtime.txt"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kept = {canonicalize_name(n) for n, _ in PIN.findall(rest)}
    dropped = set(pins(LOCK / "runtime.txt")) - kept
    assert {"torch", "torchvision"} <= dropped
    assert all(
        n in {"torch", "torchvision", "triton"} or n.startswith(("nvidia-", "cuda-"))
        for n in dropped
    )
    assert {"ray", "optuna", "numpy", "sympy"} <= kept  # torch's own pure deps stay locked
