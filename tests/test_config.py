"""Settings: defaults, environment and flags, and every bad input rejected in one line."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from jobs import cli, experiment
from jobs.config import STAGE_DEFAULTS, ConfigError, resolve
from tests.conftest import explain, run_module


def _env(tmp_path: Path, data: Path, **extra: str) -> dict[str, str]:
    return {
        "STORAGE_PATH": str(tmp_path / "storage"),
        "DATA_DIR": str(data),
        "DATASET": "fashion-mnist",
        **extra,
    }


@pytest.mark.parametrize("stage", sorted(STAGE_DEFAULTS))
def test_defaults_are_the_walkthroughs(stage: str, tmp_path: Path) -> None:
    s = resolve(stage, [], {"STORAGE_PATH": str(tmp_path)})
    assert s.num_epochs == STAGE_DEFAULTS[stage].num_epochs
    assert (s.batch_size, s.dataset, s.accelerator, s.accelerator_type) == (
        128,
        "mnist",
        "auto",
        "T4",
    )
    assert (s.metric, s.mode) == ("val_loss", "min")
    assert s.experiment_dir == tmp_path / stage


def test_walkthrough_numbers_per_stage() -> None:
    assert (STAGE_DEFAULTS["tune"].num_samples, STAGE_DEFAULTS["tune"].num_epochs) == (4, 3)
    assert (STAGE_DEFAULTS["asha"].num_samples, STAGE_DEFAULTS["asha"].num_epochs) == (4, 8)
    assert STAGE_DEFAULTS["baseline"].num_epochs == 2
    assert (STAGE_DEFAULTS["train"].num_samples, STAGE_DEFAULTS["train"].max_concurrent) == (2, 2)


def test_environment_then_flags(tmp_path: Path) -> None:
    env = {
        "STORAGE_PATH": str(tmp_path),
        "TUNE_NUM_SAMPLES": "6",
        "TUNE_NUM_EPOCHS": "5",
        "TRAIN_LIMIT": "100",
        "ACCELERATOR": "CPU",
        "TUNE_METRIC": "val_accuracy",
    }
    s = resolve("asha", ["--num-epochs", "7"], env)
    assert (s.num_samples, s.num_epochs, s.train_limit, s.accelerator) == (6, 7, 100, "cpu")
    assert s.mode == "max"
    assert s.val_limit is None


def test_storage_default_is_home_ray_results_without_shared_volume(monkeypatch) -> None:
    monkeypatch.setattr("jobs.config.SHARED_STORAGE", Path("/nonexistent/cluster_storage"))
    assert resolve("tune", [], {}).storage_path == str(Path.home() / "ray_results")


def test_storage_default_is_shared_volume_when_writable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("jobs.config.SHARED_STORAGE", tmp_path)
    assert resolve("tune", [], {}).storage_path == str(tmp_path)


def test_lr_points_parse() -> None:
    assert resolve("asha", ["--lr-points", "1e-3, 0.1"], {}).lr_points == (1e-3, 0.1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


BAD_INPUTS = [
    ("tune", ["--num-samples", "many"], {}, "TUNE_NUM_SAMPLES|--num-samples must be an integer"),
    ("tune", [], {"TUNE_NUM_SAMPLES": "0"}, "TUNE_NUM_SAMPLES must be >= 1"),
    ("tune", [], {"TUNE_NUM_EPOCHS": "0"}, "TUNE_NUM_EPOCHS must be >= 1"),
    ("tune", [], {"BATCH_SIZE": "0"}, "BATCH_SIZE must be >= 1"),
    ("baseline", [], {"LR": "0"}, "LR must be a finite number > 0"),
    ("baseline", ["--lr=-1e-3"], {}, "--lr must be a finite number > 0"),
    ("tune", ["--num-samples"], {}, "expected one argument"),
    ("tune", [], {"TRAIN_LIMIT": "0"}, "TRAIN_LIMIT must be >= 1"),
    ("tune", [], {"VAL_LIMIT": "-5"}, "VAL_LIMIT must be >= 1"),
    ("tune", [], {"TUNE_MAX_CONCURRENT": "0"}, "TUNE_MAX_CONCURRENT must be >= 1"),
    ("tune", [], {"DATASET": "cifar10"}, "DATASET must be one of mnist, fashion-mnist"),
    ("tune", [], {"ACCELERATOR": "tpu"}, "ACCELERATOR must be one of auto, gpu, cpu"),
    ("tune", [], {"TUNE_METRIC": "accuracy"}, "TUNE_METRIC must be one of"),
    ("checkpoint", ["--fresh", "--resume"], {}, "--fresh and --resume contradict"),
    ("tune", ["--bogus"], {}, "unknown argument '--bogus'"),
]


@pytest.mark.parametrize(("stage", "argv", "env", "message"), BAD_INPUTS)
def test_bad_values_fail_in_one_line_before_any_write(
    stage, argv, env, message, tmp_path, fashion_mnist, capsys
) -> None:
    environ = _env(tmp_path, fashion_mnist, **env)
    code = _main(stage, argv, environ)
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert any(part in err for part in message.split("|")), err
    assert not (tmp_path / "storage").exists()


def _main(stage: str, argv: list[str], environ: dict[str, str]) -> int:
    def must_not_run(settings):
        raise AssertionError("the stage ran despite bad input")

    with pytest.MonkeyPatch.context() as mp:
        for key in ("STORAGE_PATH", "DATA_DIR", "DATASET", "RAY_ADDRESS"):
            mp.delenv(key, raising=False)
        for key, value in environ.items():
            mp.setenv(key, value)
        return cli.main(stage, must_not_run, experiment.preflight, argv)


def test_missing_data_says_how_to_stage_it(tmp_path, capsys) -> None:
    code = _main("tune", [], _env(tmp_path, tmp_path / "empty", DATASET="mnist"))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and err.count("\n") == 1
    assert "no mnist IDX files" in err and "make data" in err


def test_unwritable_storage(tmp_path, fashion_mnist, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = _main("tune", [], _env(tmp_path, fashion_mnist, STORAGE_PATH=str(blocker / "x")))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and "STORAGE_PATH" in err and err.count("\n") == 1


def test_unreachable_ray_address(tmp_path, fashion_mnist, capsys) -> None:
    port = _closed_port()
    code = _main("tune", [], _env(tmp_path, fashion_mnist, RAY_ADDRESS=f"127.0.0.1:{port}"))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert f"RAY_ADDRESS 127.0.0.1:{port} is unreachable" in err and err.count("\n") == 1


def test_resume_without_experiment(tmp_path, fashion_mnist, capsys) -> None:
    code = _main("checkpoint", ["--resume"], _env(tmp_path, fashion_mnist))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT and "no experiment to resume" in err


def test_unknown_stage() -> None:
    with pytest.raises(ConfigError, match="unknown stage 'bayes'"):
        resolve("bayes")


def test_dry_run_prints_resolved_settings_and_exits(stage_env) -> None:
    proc = run_module("jobs.asha", ["--dry-run", "--num-samples", "3"], stage_env, timeout=120)
    assert proc.returncode == 0, explain(proc)
    settings = json.loads(proc.stdout)
    assert settings["num_samples"] == 3 and settings["stage"] == "asha"
    assert settings["experiment_dir"] == str(Path(stage_env["STORAGE_PATH"]) / "asha")
    assert not Path(stage_env["STORAGE_PATH"]).exists()


@pytest.mark.parametrize("stage", sorted(STAGE_DEFAULTS))
def test_every_entrypoint_has_help(stage, stage_env) -> None:
    proc = run_module(f"jobs.{stage}", ["--help"], stage_env, timeout=120)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "TRAIN_LIMIT" in proc.stdout


def test_submit_rejects_unknown_stage_and_bad_values(stage_env) -> None:
    proc = run_module("jobs.submit", ["bayes"], stage_env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: unknown stage")
    proc = run_module("jobs.submit", ["tune", "--batch-size", "0"], stage_env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, explain(proc)
    assert "--batch-size must be >= 1" in proc.stderr


def test_cli_error_is_one_line_on_stderr(stage_env) -> None:
    proc = run_module("jobs.tune", [], {**stage_env, "TUNE_NUM_EPOCHS": "zero"}, timeout=120)
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr == "error: TUNE_NUM_EPOCHS must be an integer, got 'zero'\n"
    assert proc.stdout == "" and sys.executable
