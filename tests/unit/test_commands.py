"""The commands around a run, as the Makefile and k8s/bin/results.sh call them:
`python -m jobs.results -` (results.json on stdin, `make results TARGET=k8s`), `--folder`
(`make tensorboard`), and `python -m jobs.evaluate --dry-run` with its DATASET / VAL_LIMIT /
DATA_DIR overrides. Bad input is one `error:` line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ray import tune

from jobs import registry
from jobs.core import records as results
from jobs.core.export import export_best_model
from jobs.core.reading import resolve
from jobs.core.trainer import Trainer
from jobs.core.training_spec import DataSpec, TrainingSpec
from tests.support.runs import REPO, explain, run_module
from tests.support.zygote import Zygote


def _summary() -> results.Summary:
    """Two trials through the project's own constructors (the results.json schema): the
    better one sorts last by id, so ranking is visible."""
    history = [{"epoch": 1, "val_loss": 0.9, "val_accuracy": 0.7}, {"epoch": 2, "val_loss": 0.5}]
    good = results.record(
        "bbbbbbbb",
        False,
        2,
        {"lr": 0.001, "batch_size": 32, "num_epochs": 2},
        {"epoch": 2, "loss": 0.4, "val_loss": 0.5, "val_accuracy": 0.8, "time_total_s": 12.5},
        history,
    )
    bad = results.record(
        "aaaaaaaa",
        False,
        2,
        {"lr": 0.1, "batch_size": 32, "num_epochs": 2},
        {"epoch": 1, "loss": 2.3, "val_loss": 2.2, "val_accuracy": 0.1, "time_total_s": 6.0},
        [{"epoch": 1, "val_loss": 2.2, "val_accuracy": 0.1}],
    )
    summary = results.Summary("asha", "val_loss", "min", [good, bad], 42.0)
    summary.compute = {"device_units_per_trial": 1.0, "device": "cpu"}
    return summary


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _one_error_line(proc, storage: Path, message: str) -> None:
    assert proc.returncode == 2, explain(proc)
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert _tree(storage) == []


# --- python -m jobs.results - -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_results_from_stdin_prints_the_stored_leaderboard_in_every_format(
    fmt: str, tiny_env: dict[str, str]
) -> None:
    summary = _summary()
    stdin = json.dumps(summary.as_dict(), indent=2) + "\n"  # results.json, byte for byte
    proc = run_module("jobs.results", ["-", "--format", fmt], tiny_env, timeout=60, stdin=stdin)
    assert proc.returncode == 0, explain(proc)
    if fmt == "table":
        board = proc.stdout.splitlines()
        assert board[1].split()[:3] == ["1", "bbbbbbbb", "completed"]  # best first
        assert board[2].split()[:3] == ["2", "aaaaaaaa", "early_stopped"]
        assert "best trial bbbbbbbb (completed, 2 epochs), ranked on val_loss (min)" in proc.stdout
    elif fmt == "json":
        data = json.loads(proc.stdout)
        assert [t["trial_id"] for t in data["trials"]] == ["bbbbbbbb", "aaaaaaaa"]
        assert data["best"]["trial_id"] == "bbbbbbbb"
        assert data["counts"] == {"completed": 1, "early_stopped": 1, "errored": 0}
        assert results.Summary.from_dict(data).as_dict() == summary.as_dict()
    else:
        assert proc.stdout == results.as_csv(summary)
        assert proc.stdout.splitlines()[1].startswith("1,bbbbbbbb,completed,0.4,")
    assert proc.stderr == ""
    assert _tree(Path(tiny_env["STORAGE_PATH"])) == []


def test_results_from_stdin_match_the_same_results_json_read_from_disk(
    tmp_path: Path, tiny_env: dict[str, str]
) -> None:
    # make results TARGET=k8s (cluster volume -> stdin) shows what `make results` shows.
    folder = tmp_path / "copied" / "asha"
    results.write(folder, _summary())
    for fmt in ("table", "json", "csv"):
        stored = run_module("jobs.results", [str(folder), "--format", fmt], tiny_env, timeout=60)
        piped = run_module(
            "jobs.results",
            ["-", "--format", fmt],
            tiny_env,
            timeout=60,
            stdin=(folder / results.RESULTS_FILE).read_text(),
        )
        assert stored.returncode == piped.returncode == 0, explain(piped)
        assert piped.stdout == stored.stdout and piped.stdout.strip()


def _truncated() -> str:
    text = json.dumps(_summary().as_dict(), indent=2)
    return text[: len(text) // 2]  # a copy cut off mid-way


def _without(key: str) -> str:
    data = _summary().as_dict()
    del data[key]
    return json.dumps(data)


def _trial_without(key: str) -> str:
    data = _summary().as_dict()
    del data["trials"][0][key]
    return json.dumps(data)


def _epochs_word() -> str:
    data = _summary().as_dict()
    data["trials"][0]["epochs"] = "two"
    return json.dumps(data)


BAD_STDIN = {
    "empty": ("", "Expecting value"),  # results.sh failed and printed nothing
    "not-json": ("error: no asha/results.json on the volume\n", "Expecting value"),
    "truncated": (_truncated(), "cannot read results from -"),
    "a-list": ("[]", "cannot read results from -"),
    "null": ("null", "cannot read results from -"),
    "no-trials": (_without("trials"), "'trials'"),
    "no-wall-time": (_without("wall_time_s"), "'wall_time_s'"),
    "trial-without-metrics": (_trial_without("metrics"), "'metrics'"),
    "epochs-a-word": (_epochs_word(), "invalid literal for int()"),
}


@pytest.mark.parametrize("case", BAD_STDIN, ids=list(BAD_STDIN))
def test_bad_results_on_stdin_is_one_error_line_exit_2(case: str, tiny_env: dict[str, str]) -> None:
    stdin, message = BAD_STDIN[case]
    proc = run_module("jobs.results", ["-"], tiny_env, timeout=60, stdin=stdin)
    _one_error_line(proc, Path(tiny_env["STORAGE_PATH"]), message)
    assert proc.stderr.startswith("error: cannot read results from -: ")


# --- python -m jobs.results STAGE --folder (make tensorboard) -----------------------------------


def test_folder_prints_the_stages_experiment_folder_and_creates_nothing(
    tmp_path: Path, tiny_env: dict[str, str]
) -> None:
    storage = Path(tiny_env["STORAGE_PATH"])
    for stage in registry.names():
        proc = run_module("jobs.results", [stage, "--folder"], tiny_env, timeout=60)
        assert proc.returncode == 0, explain(proc)
        assert proc.stdout == f"{storage / stage}\n"
    # A relative STORAGE_PATH is resolved as a run resolves it (tensorboard's --logdir).
    env = dict(tiny_env, STORAGE_PATH="rel/storage")
    proc = run_module("jobs.results", ["asha", "--folder"], env, timeout=60)
    assert proc.stdout == f"{REPO / 'rel' / 'storage' / 'asha'}\n", explain(proc)
    assert not (REPO / "rel").exists() and not storage.exists()


def test_folder_of_a_folder_or_its_results_json_is_that_folder(
    tmp_path: Path, tiny_env: dict[str, str]
) -> None:
    folder = tmp_path / "copied" / "tune"
    results.write(folder, _summary())
    for source in (folder, folder / results.RESULTS_FILE):
        proc = run_module("jobs.results", [str(source), "--folder"], tiny_env, timeout=60)
        assert proc.returncode == 0, explain(proc)
        assert proc.stdout == f"{folder}\n"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["asha", "--folder"], {"STORAGE_PATH": " "}, "STORAGE_PATH must not be empty"),
        (["-", "--folder"], {}, "--folder needs a stage or an existing folder, not '-'"),
        (["bayes", "--folder"], {}, "not 'bayes'"),
        (["asha", "--format", "xml"], {}, "invalid choice: 'xml'"),
        ([], {}, "the following arguments are required: source"),
    ],
    ids=["empty-storage", "stdin", "unknown-stage", "bad-format", "no-source"],
)
def test_bad_results_command_lines_are_one_error_line_exit_2(
    argv: list[str], env: dict[str, str], message: str, tiny_env: dict[str, str]
) -> None:
    proc = run_module("jobs.results", argv, {**tiny_env, **env}, timeout=60)
    _one_error_line(proc, Path(tiny_env["STORAGE_PATH"]), message)


# --- python -m jobs.evaluate --dry-run ----------------------------------------------------------

TRIAL = "c0ffee00"
CONFIG = {"lr": 0.001, "batch_size": 16, "num_epochs": 2}


def _export(tmp_path: Path, tiny_idx: Path, dataset: str = "mnist", val_limit: str = "16") -> Path:
    """best_model.pt written by jobs.core.export from a real Trainer's checkpoint state."""
    env = {
        "STORAGE_PATH": str(tmp_path / "run"),
        "DATA_DIR": str(tiny_idx),
        "DATASET": dataset,
        "VAL_LIMIT": val_limit,
    }
    settings = resolve(registry.load("checkpoint"), [], env)
    settings.experiment_dir.mkdir(parents=True)  # the run made it
    spec = TrainingSpec(data=DataSpec(str(tiny_idx), dataset), seed=0).for_trial(CONFIG)
    trainer = Trainer(spec, device=torch.device("cpu"))
    ckpt_dir = tmp_path / "run" / "trial" / "checkpoint_000001"
    ckpt_dir.mkdir(parents=True)
    torch.save(trainer.state(2), ckpt_dir / "model.pt")
    metrics = {"epoch": 2, "loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5}
    trial = results.record(TRIAL, False, 2, CONFIG, metrics, [metrics])
    summary = results.Summary("checkpoint", settings.metric, settings.mode, [trial], 5.0)

    result = SimpleNamespace(  # what export reads of a ray.tune.Result
        path=str(tmp_path / "run" / f"train_trial_{TRIAL}_00000"),
        best_checkpoints=[(tune.Checkpoint.from_directory(str(ckpt_dir)), metrics)],
    )
    (path,) = export_best_model(settings, [result], summary)
    return path


@pytest.fixture
def model_file(tmp_path: Path, tiny_idx: Path) -> Path:
    return _export(tmp_path, tiny_idx)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_evaluate_dry_run_checks_and_says_what_it_would_do_and_evaluates_nothing(
    tmp_path: Path, tiny_idx: Path, tiny_env: dict[str, str], model_file: Path, zygote: Zygote
) -> None:
    env = dict(tiny_env)
    del env["DATASET"]  # the file's dataset and split (mnist, VAL_LIMIT=16) are used
    before = _snapshot(tmp_path)
    proc = zygote.run("jobs.evaluate", [str(model_file), "--dry-run"], env)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout == (
        f"{model_file}: trial {TRIAL}, would be evaluated on 16 test images of mnist "
        f"from {tiny_idx}\n"
    )
    assert "accuracy" not in proc.stdout + proc.stderr
    assert _snapshot(tmp_path) == before
    # Without --dry-run the same command does evaluate: what the dry run left out.
    proc = zygote.run("jobs.evaluate", [str(model_file)], env)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.startswith(f"trial: {TRIAL} (epoch 2, config ")
    assert "\naccuracy: " in proc.stdout and "\nloss: " in proc.stdout
    assert _snapshot(tmp_path) == before


def test_evaluate_dry_run_shows_the_dataset_split_and_data_dir_overrides(
    tmp_path: Path, tiny_idx: Path, tiny_env: dict[str, str], model_file: Path, zygote: Zygote
) -> None:
    other = shutil.copytree(tiny_idx, tmp_path / "elsewhere")
    env = dict(tiny_env, DATASET="fashion-mnist", VAL_LIMIT="8", DATA_DIR=str(other))
    proc = zygote.run("jobs.evaluate", [str(model_file), "--dry-run"], env)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout == (
        f"{model_file}: trial {TRIAL}, would be evaluated on 8 test images of fashion-mnist "
        f"from {other}\n"
    )


# case: (environment, a part of the error line)
BAD_DRY_RUNS = {
    "val-limit-past-split": ({"VAL_LIMIT": "100"}, "VAL_LIMIT=100 is more than the 32"),
    "saved-split-past-data": ({}, "VAL_LIMIT=64 is more than the 32 test images"),
    "dataset-unknown": ({"DATASET": "cifar10"}, "DATASET must be one of"),
    "data-dir-empty": ({"DATA_DIR": "{tmp}/nothing"}, "no mnist IDX files"),
    "file-names-unknown-dataset": ({}, "names an unknown dataset 'cifar10'"),
    "no-path": ({}, "the following arguments are required: path"),
    "unknown-flag": ({}, "unrecognized arguments: --evaluate-twice"),
}


@pytest.mark.parametrize("case", BAD_DRY_RUNS, ids=list(BAD_DRY_RUNS))
def test_bad_evaluate_dry_run_is_one_error_line_exit_2(
    case: str, tmp_path: Path, tiny_idx: Path, tiny_env: dict[str, str], zygote: Zygote
) -> None:
    env, message = BAD_DRY_RUNS[case]
    model = _export(tmp_path, tiny_idx, val_limit="64" if case == "saved-split-past-data" else "16")
    argv = [str(model), "--dry-run"]
    if case == "file-names-unknown-dataset":
        saved = torch.load(model, weights_only=False)
        torch.save({**saved, "dataset": "cifar10"}, model)
    elif case == "no-path":
        argv = ["--dry-run"]
    elif case == "unknown-flag":
        argv.append("--evaluate-twice")
    (tmp_path / "nothing").mkdir()
    proc_env = {k: v for k, v in tiny_env.items() if k != "DATASET"}
    proc_env.update({k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()})
    before = _snapshot(tmp_path)
    proc = zygote.run("jobs.evaluate", argv, proc_env)
    _one_error_line(proc, Path(tiny_env["STORAGE_PATH"]), message)
    assert _snapshot(tmp_path) == before
