"""A battery of bad inputs, each run as a user would type it: one `error:` line on stderr,
exit code 2, no traceback, and nothing written under STORAGE_PATH.

The first case of each module runs as a plain `python -m` subprocess; the others are forked
from a process that has already imported the modules (tests/support/zygote.py), which saves
the 5 s of torch and Ray imports per case and changes nothing the case checks.

The damaged datasets are real copies of Debian's Fashion-MNIST with one file broken the way
files break in practice: cut short, mixed up with the other split, overwritten, relabelled.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.core.idx import SPLIT_FILES
from tests.support.idx import write_idx
from tests.support.runs import REPO, clean_env, run_make, run_module
from tests.support.zygote import Zygote  # the session's, tests/conftest.py

# No stage runs here (each case ends in its first second): part of make test-quick.
pytestmark = pytest.mark.quick
FILES = [stem for pair in SPLIT_FILES.values() for stem in pair]


def _damaged_copy(source: Path, folder: Path, damage: Callable[[Path], None]) -> Path:
    """The four files of `source` (symlinked), with `damage` applied to a private copy."""
    folder.mkdir(parents=True)
    for stem in FILES:
        os.symlink(source / f"{stem}.gz", folder / f"{stem}.gz")
    damage(folder)
    return folder


def _own(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.gz"
    target = path.resolve()
    path.unlink()
    shutil.copy(target, path)
    return path


def truncate_train_images(folder: Path) -> None:
    path = _own(folder, "train-images-idx3-ubyte")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def swap_train_labels(folder: Path) -> None:
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    os.symlink(
        (folder / "t10k-labels-idx1-ubyte.gz").resolve(), folder / "train-labels-idx1-ubyte.gz"
    )


def bad_magic(folder: Path) -> None:
    path = _own(folder, "t10k-images-idx3-ubyte")
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x0D  # float32 instead of unsigned bytes
    path.write_bytes(gzip.compress(bytes(raw)))


def label_out_of_range(folder: Path) -> None:
    path = _own(folder, "t10k-labels-idx1-ubyte")
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] = 11
    path.write_bytes(gzip.compress(bytes(raw)))


def not_gzip(folder: Path) -> None:
    path = _own(folder, "t10k-labels-idx1-ubyte")
    path.write_bytes(b"<html>404 Not Found</html>\n")


def empty_file(folder: Path) -> None:
    path = _own(folder, "train-labels-idx1-ubyte")
    path.write_bytes(b"")


def missing_file(folder: Path) -> None:
    (folder / "t10k-images-idx3-ubyte.gz").unlink()


def wrong_image_size(folder: Path) -> None:
    path = _own(folder, "t10k-images-idx3-ubyte")
    write_idx(path, np.zeros((10000, 32, 32), dtype=np.uint8))


DAMAGES = {
    "truncated-gz": (truncate_train_images, "train-images-idx3-ubyte.gz cannot be read to its end"),
    "other-splits-labels": (swap_train_labels, "has 60000 images but train-labels"),
    "bad-magic": (bad_magic, "is not an unsigned-byte IDX file"),
    "label-11": (label_out_of_range, "has label 11; labels must lie in 0-9"),
    "not-gzip": (not_gzip, "t10k-labels-idx1-ubyte.gz cannot be read to its end"),
    "empty-file": (empty_file, "train-labels-idx1-ubyte.gz is not an IDX file"),
    "missing-file": (missing_file, "no fashion-mnist IDX files under DATA_DIR"),
    "32x32-images": (wrong_image_size, "must hold 28x28 images"),
}


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]  # the command; "{tmp}" and "{bad:NAME}" are filled in
    env: dict[str, str] = field(default_factory=dict)
    message: str = ""  # a part of the error line
    make: bool = False  # argv is a make command line


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOSED = _closed_port()

CASES = [
    # --- settings -------------------------------------------------------------------
    Case("samples-word", ["jobs.tune", "--num-samples", "many"], {}, "must be an integer"),
    Case("samples-zero", ["jobs.tune"], {"TUNE_NUM_SAMPLES": "0"}, "TUNE_NUM_SAMPLES must be >= 1"),
    Case("epochs-zero", ["jobs.asha"], {"TUNE_NUM_EPOCHS": "0"}, "TUNE_NUM_EPOCHS must be >= 1"),
    Case("batch-zero", ["jobs.tune"], {"BATCH_SIZE": "0"}, "BATCH_SIZE must be >= 1"),
    Case("lr-zero", ["jobs.baseline"], {"LR": "0"}, "LR must be a finite number > 0"),
    Case("gpu-share-zero", ["jobs.asha"], {"GPUS_PER_TRIAL": "0"}, "must be a number in (0, 1]"),
    Case("gpu-share-train", ["jobs.train"], {"GPUS_PER_TRIAL": "0.5"}, "need a whole GPU"),
    Case("lr-negative", ["jobs.baseline", "--lr=-1e-3"], {}, "--lr must be a finite number > 0"),
    Case("lr-nan", ["jobs.baseline"], {"LR": "nan"}, "LR must be a finite number > 0"),
    Case("flag-without-value", ["jobs.tune", "--num-samples"], {}, "expected one argument"),
    Case("train-limit-zero", ["jobs.tune"], {"TRAIN_LIMIT": "0"}, "TRAIN_LIMIT must be >= 1"),
    Case("val-limit-negative", ["jobs.tune"], {"VAL_LIMIT": "-5"}, "VAL_LIMIT must be >= 1"),
    Case("concurrency-zero", ["jobs.tune"], {"TUNE_MAX_CONCURRENT": "0"}, "must be >= 1"),
    Case("dataset-cifar", ["jobs.tune"], {"DATASET": "cifar10"}, "DATASET must be one of"),
    Case("accelerator-tpu", ["jobs.tune"], {"ACCELERATOR": "tpu"}, "ACCELERATOR must be one of"),
    Case(
        "accelerator-type-space", ["jobs.tune"], {"ACCELERATOR_TYPE": "T4 GPU"}, "accelerator name"
    ),
    Case(
        "metric-unknown", ["jobs.tune"], {"TUNE_METRIC": "accuracy"}, "TUNE_METRIC must be one of"
    ),
    Case("lr-points-word", ["jobs.asha"], {"TUNE_LR_POINTS": "1e-3,abc"}, "must be a number"),
    Case("seed-negative", ["jobs.tune"], {"SEED": "-1"}, "SEED must be >= 0"),
    Case("trial-seeds-unknown", ["jobs.tune"], {"TRIAL_SEEDS": "random"}, "TRIAL_SEEDS must be"),
    Case("memory-word", ["jobs.tune"], {"TRIAL_MEMORY_MIB": "2G"}, "must be an integer"),
    Case("lock-wait-zero", ["jobs.tune"], {"LOCK_WAIT_S": "0"}, "LOCK_WAIT_S must be a finite"),
    Case("gpu-wait-word", ["jobs.tune"], {"GPU_WAIT_S": "soon"}, "GPU_WAIT_S must be an integer"),
    Case("fail-past-last-epoch", ["jobs.tune"], {"FAIL_AT_EPOCH": "5"}, "past the last epoch"),
    Case("fresh-and-resume", ["jobs.checkpoint", "--fresh", "--resume"], {}, "contradict"),
    Case("unknown-flag", ["jobs.tune", "--bogus"], {}, "unknown argument '--bogus'"),
    Case("stop-after-zero", ["jobs.checkpoint"], {"STOP_TRIAL_AFTER": "0"}, "must be >= 1"),
    Case("budget-inf", ["jobs.checkpoint"], {"TIME_BUDGET_S": "inf"}, "finite number > 0"),
    Case("stopper-on-tune", ["jobs.tune", "--stop-all-at", "0.05"], {}, "unknown argument"),
    # --- data -----------------------------------------------------------------------------
    *(
        Case(f"data-{name}", ["jobs.tune"], {"DATA_DIR": f"{{bad:{name}}}"}, message)
        for name, (_, message) in DAMAGES.items()
    ),
    Case("data-empty-folder", ["jobs.baseline"], {"DATA_DIR": "{tmp}/nothing"}, "make data"),
    Case("data-dir-is-a-file", ["jobs.tune"], {"DATA_DIR": "/etc/hostname"}, "no fashion-mnist"),
    Case("train-limit-past-split", ["jobs.tune"], {"TRAIN_LIMIT": "70000"}, "more than the 60000"),
    Case("val-limit-past-split", ["jobs.tune"], {"VAL_LIMIT": "20000"}, "more than the 10000"),
    # --- paths and addresses --------------------------------------------------------------
    Case(
        "storage-under-a-file", ["jobs.tune"], {"STORAGE_PATH": "/etc/hostname/x"}, "not a folder"
    ),
    Case("storage-in-proc", ["jobs.tune"], {"STORAGE_PATH": "/proc/ray_results"}, "not writable"),
    Case("storage-name-too-long", ["jobs.tune"], {"STORAGE_PATH": "{tmp}/" + "a" * 300}, "255"),
    Case("storage-broken-link", ["jobs.tune"], {"STORAGE_PATH": "{tmp}/dangling/x"}, "broken"),
    Case("storage-empty", ["jobs.tune"], {"STORAGE_PATH": " "}, "must not be empty"),
    Case("address-no-port", ["jobs.tune"], {"RAY_ADDRESS": "localhost:notaport"}, "with a port"),
    Case("address-scheme", ["jobs.tune"], {"RAY_ADDRESS": "ftp://head:10001"}, "unknown scheme"),
    Case("address-empty-url", ["jobs.tune"], {"RAY_ADDRESS": "http://"}, "with a port"),
    Case("address-closed", ["jobs.tune"], {"RAY_ADDRESS": f"127.0.0.1:{CLOSED}"}, "unreachable"),
    Case("resume-nothing", ["jobs.checkpoint", "--resume"], {}, "no experiment to resume"),
    # --- evaluate, submit, results --------------------------------------------------------
    Case("evaluate-missing", ["jobs.evaluate", "{tmp}/none.pt"], {}, "does not exist"),
    Case("evaluate-text", ["jobs.evaluate", "/etc/hostname"], {}, "is not a model file"),
    Case("evaluate-other-dict", ["jobs.evaluate", "{tmp}/other.pt"], {}, "not a best_model.pt"),
    Case("evaluate-wrong-weights", ["jobs.evaluate", "{tmp}/wrong.pt"], {}, "do not fit the model"),
    Case("submit-unknown-stage", ["jobs.submit", "bayes"], {}, "unknown stage 'bayes'"),
    Case("submit-bad-value", ["jobs.submit", "tune", "--batch-size", "0"], {}, "must be >= 1"),
    Case("submit-bad-address", ["jobs.submit", "tune"], {"RAY_ADDRESS": "head::1"}, "RAY_ADDRESS"),
    Case("results-nothing", ["jobs.results", "tune"], {}, "cannot read results"),
    Case("report-nothing", ["jobs.report", "tune"], {}, "no run at"),
    Case("compare-nothing", ["jobs.compare", "asha"], {}, "no run at"),
    # --- WARM_START -----------------------------------------------------------------------
    Case("warm-missing", ["jobs.asha"], {"WARM_START": "{tmp}/none"}, "WARM_START: no run at"),
    Case(
        "warm-other-metric",
        ["jobs.asha", "--num-epochs", "8"],
        {"WARM_START": "{tmp}/accuracy-run"},
        "ranked its trials on val_accuracy (max); this search tunes val_loss (min)",
    ),
    Case("warm-other-space", ["jobs.asha"], {"WARM_START": "{tmp}/run"}, "searched another space"),
    Case("warm-random-search", ["jobs.tune"], {"WARM_START": "{tmp}/run"}, "searches at random"),
    Case("e2e-not-yaml", ["tests.support.runner", "README.md"], {}, "is not YAML"),
    Case("e2e-not-a-rayjob", ["tests.support.runner", "k8s/raycluster.yaml"], {}, "one RayJob"),
    Case(
        "e2e-env-without-value",
        ["tests.support.runner", "k8s/rayjob-asha.yaml", "--env", "TRAIN_LIMIT"],
        {},
        "--env takes KEY=VALUE",
    ),
    Case(
        "e2e-missing-values",
        ["tests.support.runner", "k8s/rayjob-asha.yaml", "--values", "k8s/values/x.yaml"],
        {},
        "no values file",
    ),
    # --- make, as typed -------------------------------------------------------------------
    Case("make-submit-stage", ["submit", "STAGE=bayes"], {}, "unknown STAGE 'bayes'", make=True),
    Case("make-run-value", ["run", "STAGE=tune", "ARGS=--num-epochs=0"], {}, ">= 1", make=True),
    Case("make-results-nothing", ["results", "STAGE=asha"], {}, "cannot read results", make=True),
    Case("make-report-nothing", ["report", "STAGE=asha"], {}, "no run at", make=True),
    Case("make-compare-nothing", ["compare", "STAGE=asha"], {}, "no run at", make=True),
    Case("make-e2e-stage", ["e2e-podman", "STAGE=grid"], {}, "unknown STAGE 'grid'", make=True),
]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory, fashion_mnist: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("damaged")
    return {
        name: _damaged_copy(fashion_mnist, root / name, damage)
        for name, (damage, _) in DAMAGES.items()
    }


def _fill(text: str, tmp: Path, bad: dict[str, Path]) -> str:
    for name, folder in bad.items():
        text = text.replace(f"{{bad:{name}}}", str(folder))
    return text.replace("{tmp}", str(tmp))


def _files(tmp: Path) -> None:
    (tmp / "dangling").symlink_to(tmp / "gone")
    # Finished asha runs for WARM_START: `run` trained at batch 64 (asha's default is 128:
    # another search space), `accuracy-run` ranked its trials on val_accuracy.
    trial = {"trial_id": "a", "status": "completed", "epochs": 8, "metrics": {"val_loss": 1.0}}
    for name, metric, mode, batch in (
        ("run", "val_loss", "min", 64),
        ("accuracy-run", "val_accuracy", "max", 128),
    ):
        summary = {
            "stage": "asha",
            "metric": metric,
            "mode": mode,
            "wall_time_s": 1.0,
            "trials": [{**trial, "config": {"lr": 0.01, "batch_size": batch, "num_epochs": 8}}],
        }
        (tmp / name).mkdir()
        (tmp / name / "results.json").write_text(json.dumps(summary))
    torch.save({"weights": [1, 2, 3]}, tmp / "other.pt")
    torch.save(
        {
            "model": {"fc.weight": torch.zeros(3, 3)},
            "trial_id": "x",
            "config": {},
            "epoch": 1,
            "dataset": "fashion-mnist",
        },
        tmp / "wrong.pt",
    )


MODULES = sorted({c.argv[0] for c in CASES if not c.make})
# The first case of each module: run as a plain subprocess, imports and all.
PLAIN = {next(c.name for c in CASES if not c.make and c.argv[0] == m) for m in MODULES}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(
    case: Case, tmp_path: Path, bad_data: dict[str, Path], fashion_mnist: Path, zygote: Zygote
) -> None:
    _files(tmp_path)
    storage = tmp_path / "storage"
    env = clean_env(
        STORAGE_PATH=str(storage),
        DATA_DIR=str(fashion_mnist),
        DATASET="fashion-mnist",
        TRAIN_LIMIT="1024",
        VAL_LIMIT="512",
    )
    if case.name in ("train-limit-past-split", "val-limit-past-split"):
        env.pop("TRAIN_LIMIT"), env.pop("VAL_LIMIT")
    env.update({k: _fill(v, tmp_path, bad_data) for k, v in case.env.items()})
    argv = [_fill(a, tmp_path, bad_data) for a in case.argv]
    if case.make:
        proc = run_make(argv, env, timeout=300)
        # make adds its own "make: *** [...] Error 2" line after the command's.
        errors = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    else:
        if case.name in PLAIN:
            proc = run_module(argv[0], argv[1:], env, timeout=300)
        else:
            proc = zygote.run(argv[0], argv[1:], env, tmp_path)
        errors = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr[-2000:]
    assert case.message in errors[0], errors[0]
    written = list(storage.rglob("*")) if storage.exists() else []
    assert not written, written


def test_the_battery_covers_at_least_30_cases_and_the_readme_says_how_many() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)
    readme = (REPO / "tests" / "README.md").read_text()
    assert f"`test_bad_input.py`: {len(CASES)} cases" in readme
