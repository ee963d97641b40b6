"""Fixtures and the per-folder markers: tests/unit, tests/integration, tests/e2e.

Helpers live in tests/support, imported from there (not from this file).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import registry
from tests.support.idx import make_dataset
from tests.support.runs import CI_SIZE, FASHION_MNIST, REPO, TEST_ENV, clean_env
from tests.support.zygote import Zygote

KINDS = ("unit", "integration", "e2e")


def pytest_configure(config: pytest.Config) -> None:
    # In-process Ray (Tuner wiring tests) must not write ~/.ray/auth_token or warn about it.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name, value in TEST_ENV.items():  # for the Ray heads started in this process too
        os.environ.setdefault(name, value)
    # Started in the background by a non-interactive shell (`make test &`, a CI step run so),
    # this process and every process it starts would ignore SIGINT, and a test that stops a
    # run with Ctrl-C would fail for it: undo that, as a terminal would start us.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The modules whose tests run a stage (a local Ray and its trials) or containers: minutes
# each, against seconds for the rest.
HEAVY = ("test_stages.py", "test_submit_remote.py", "test_tuner.py")


def heavy(item: pytest.Item, kind: str) -> bool:
    """Whether the test runs a stage or containers."""
    return kind == "e2e" or item.path.name in HEAVY


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked with the kind of its folder, so `-m unit` selects a folder; unit
    tests are also `quick` (make test-quick), like the integration modules that say so.
    Under pytest-xdist (make test: -n 2 --dist load) the heavy tests are handed out first,
    the longest work first, so that the two workers share them (each leaves a core partly
    idle: a stage test keeps ~1.5 cores busy, an e2e test ~1.3) and the short ones fill in
    at the end. (No xdist groups: pytest-xdist 3.8's loadgroup renames a test's nodeid,
    which pytest 9 no longer lets it do, so its groups are silently ignored.)"""
    tests = Path(__file__).parent
    kind_of = {}
    for item in items:
        kind = kind_of[item] = item.path.relative_to(tests).parts[0]
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))
        if kind == "unit":
            item.add_marker(pytest.mark.quick)
    items.sort(key=lambda item: not heavy(item, kind_of[item]))  # stable: files' order kept


@pytest.fixture(scope="session")
def fashion_mnist() -> Path:
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"Fashion-MNIST is missing at {FASHION_MNIST}: "
            "apt-get install dataset-fashion-mnist (.ci/run does)"
        )
    return FASHION_MNIST


# The entrypoints a forked run preloads: every one that imports torch or Ray.
ENTRYPOINTS = (*(f"jobs.{stage}" for stage in registry.names()), "jobs.evaluate", "jobs.submit")


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """`python -m <module>` forked from one process that imported the entrypoints once: a
    real process's exit code and streams in ~0.1 s instead of ~5-9 s of imports. For runs
    that end before any training (bad input, --help, --dry-run, a lock refused); the stages
    themselves run as plain processes (tests/integration)."""
    forked = Zygote(ENTRYPOINTS, clean_env(), REPO)
    yield forked
    forked.close()


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
