"""Fixtures and the per-folder markers: tests/unit, tests/integration, tests/e2e.

Helpers live in tests/support, imported from there (not from this file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.idx import make_dataset
from tests.support.runs import CI_SIZE, FASHION_MNIST, clean_env

KINDS = ("unit", "integration", "e2e")


def pytest_configure(config: pytest.Config) -> None:
    # In-process Ray (Tuner wiring tests) must not write ~/.ray/auth_token or warn about it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with the kind of its folder, so `-m unit` selects a folder."""
    tests = Path(__file__).parent
    for item in items:
        kind = item.path.relative_to(tests).parts[0]
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def fashion_mnist() -> Path:
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"Fashion-MNIST is missing at {FASHION_MNIST}: "
            "apt-get install dataset-fashion-mnist (.ci/run does)"
        )
    return FASHION_MNIST


@pytest.fixture(scope="session")
def tiny_idx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real MNIST-format dataset (64 train, 32 test images) made by the tests."""
    return make_dataset(tmp_path_factory.mktemp("tiny-idx"))


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short private Ray temp dir (Ray's socket paths must stay under ~107 chars)."""
    path = Path(tempfile.mkdtemp(prefix="rtk-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stage_env(tmp_path: Path, fashion_mnist: Path, ray_tmp: Path) -> dict[str, str]:
    """Environment for running a stage as a user would on real Fashion-MNIST."""
    return clean_env(
        STORAGE_PATH=str(tmp_path / "storage"),
        DATA_DIR=str(fashion_mnist),
        DATASET="fashion-mnist",
        RAY_TMPDIR=str(ray_tmp),
        **CI_SIZE,
    )


@pytest.fixture
def tiny_env(tmp_path: Path, tiny_idx: Path) -> dict[str, str]:
    """Environment for a stage's command line on the tiny dataset (no Ray is started)."""
    return clean_env(
        STORAGE_PATH=str(tmp_path / "storage"), DATA_DIR=str(tiny_idx), DATASET="fashion-mnist"
    )
