"""Settings: the walkthrough's defaults, environment then flags, one declaration per setting
(help, dry run, README table, `make submit` forwarding), and bad values in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobs import registry
from jobs.core import cli
from jobs.core import settings as settings_module
from jobs.core.parsers import ConfigError
from jobs.core.reading import env_names
from jobs.core.settings import Settings, settings_fields
from jobs.settings_table import readme_table
from jobs.submit import forwarded_env
from tests.support.runs import REPO, explain, settings
from tests.support.zygote import Zygote

# The walkthrough's numbers (intro-to-ray-tune.md), written here, not read from the code:
# Part 1 train_loop_torch(num_epochs=2); Part 2 num_epochs 3, num_samples=4; Part 3
# num_epochs 8, num_samples=4; Part 4 num_epochs 2, num_samples=4; Part 5 num_epochs 3,
# num_samples=2, max_concurrent_trials=2.
WALKTHROUGH = {
    "baseline": {"num_epochs": 2},
    "tune": {"num_epochs": 3, "num_samples": 4},
    "asha": {"num_epochs": 8, "num_samples": 4},
    "checkpoint": {"num_epochs": 2, "num_samples": 4},
    "train": {"num_epochs": 3, "num_samples": 2, "max_concurrent": 2},
}


def test_the_registry_lists_the_five_parts_in_order() -> None:
    assert registry.names() == ("baseline", "tune", "asha", "checkpoint", "train")
    assert [registry.load(n).part for n in registry.names()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("stage", sorted(WALKTHROUGH))
def test_defaults_are_the_walkthroughs(stage: str, tmp_path: Path) -> None:
    s = settings(stage, env={"STORAGE_PATH": str(tmp_path)})
    for name, value in WALKTHROUGH[stage].items():
        assert getattr(s, name) == value, name
    assert (s.batch_size, s.lr, s.dataset, s.accelerator, s.accelerator_type) == (
        128,
        1e-3,
        "mnist",
        "auto",
        "T4",
    )
    assert (s.metric, s.mode) == ("val_loss", "min")
    assert s.experiment_dir == tmp_path / stage


def test_environment_then_flags(tmp_path: Path) -> None:
    env = {
        "STORAGE_PATH": str(tmp_path),
        "TUNE_NUM_SAMPLES": "6",
        "TUNE_NUM_EPOCHS": "5",
        "TRAIN_LIMIT": "100",
        "ACCELERATOR": "CPU",
        "TUNE_METRIC": "val_accuracy",
    }
    s = settings("asha", "--num-epochs", "7", env=env)
    assert (s.num_samples, s.num_epochs, s.train_limit, s.accelerator) == (6, 7, 100, "cpu")
    assert s.mode == "max"
    assert s.val_limit is None


def test_a_stage_reads_only_its_settings() -> None:
    # LR is the baseline's; the Tune stages sample it. TUNE_NUM_SAMPLES is the Tune stages'.
    assert settings("tune", env={"LR": "0.5"}).lr == 1e-3
    assert settings("baseline", env={"TUNE_NUM_SAMPLES": "9"}).num_samples == 1
    assert settings("checkpoint", env={"STOP_ALL_AT": "0.05"}).options.stop_all_at == 0.05
    assert settings("tune", env={"STOP_ALL_AT": "0.05"}).options is None
    with pytest.raises(ConfigError, match="unknown argument '--stop-all-at'"):
        settings("tune", "--stop-all-at", "0.05")
    assert "FAIL_AT_EPOCH" not in env_names(registry.load("train"))


def test_storage_default_is_home_ray_results_without_shared_volume(monkeypatch) -> None:
    monkeypatch.setattr(settings_module, "SHARED_STORAGE", Path("/nonexistent/cluster_storage"))
    assert settings("tune").storage_path == str(Path.home() / "ray_results")


def test_storage_default_is_shared_volume_when_writable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(settings_module, "SHARED_STORAGE", tmp_path)
    assert settings("tune").storage_path == str(tmp_path)


def test_lr_points_parse() -> None:
    assert settings("asha", "--lr-points", "1e-3, 0.1").lr_points == (1e-3, 0.1)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:6379", "auto", "ray://head:10001", "http://127.0.0.1:8265", "https://x.y:443"],
)
def test_ray_address_forms_that_are_accepted(address: str) -> None:
    assert settings("tune", env={"RAY_ADDRESS": address}).ray_address == address


def test_every_setting_is_declared_once_with_its_reading() -> None:
    stages = [registry.load(n) for n in registry.names()]
    declared = [
        f.name
        for cls in (Settings, *(s.options for s in stages if s.options))
        for f, _ in settings_fields(cls)
    ]
    assert len(declared) == len(set(declared))
    envs = [
        s.env
        for cls in (Settings, *(s.options for s in stages if s.options))
        for _, s in settings_fields(cls)
        if s.env
    ]
    assert len(envs) == len(set(envs))
    # make submit forwards exactly what the stage reads (but the address, which is the
    # job's own), plus the Ray fixes.
    checkpoint = registry.load("checkpoint")
    assert "STOP_ALL_AT" in forwarded_env(checkpoint) and "RAY_ADDRESS" not in forwarded_env(
        checkpoint
    )
    assert "STOP_ALL_AT" not in forwarded_env(registry.load("tune"))


def test_readme_settings_table_is_generated_from_the_declarations() -> None:
    table = readme_table([registry.load(n) for n in registry.names()])
    readme = (REPO / "jobs" / "README.md").read_text()
    stale = "jobs/README.md's settings table is stale: python -m jobs.settings_table"
    assert table in readme, stale
    assert re.search(r"\| `STOP_ALL_AT` \| `--stop-all-at` \| off \| checkpoint \|", table)
    assert re.search(r"\| `LR` \| `--lr` \| 0.001 \| baseline \|", table)


def test_dry_run_prints_resolved_settings_and_writes_nothing(tiny_env, zygote: Zygote) -> None:
    proc = zygote.run("jobs.asha", ["--dry-run", "--num-samples", "3"], tiny_env)
    assert proc.returncode == 0, explain(proc)
    resolved = json.loads(proc.stdout)
    assert resolved["num_samples"] == 3 and resolved["stage"] == "asha"
    assert resolved["experiment_dir"] == str(Path(tiny_env["STORAGE_PATH"]) / "asha")
    assert not Path(tiny_env["STORAGE_PATH"]).exists()


@pytest.mark.parametrize("stage", registry.names())
def test_every_stage_has_help_with_its_own_settings(stage, tiny_env, zygote: Zygote) -> None:
    proc = zygote.run(f"jobs.{stage}", ["--help"], tiny_env)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "TRAIN_LIMIT" in proc.stdout
    assert ("STOP_ALL_AT" in proc.stdout) == (stage == "checkpoint")
    assert ("[env LR;" in proc.stdout) == (stage == "baseline")


def test_unknown_stage() -> None:
    with pytest.raises(registry.UnknownStage, match="unknown stage 'bayes'"):
        registry.load("bayes")


def test_cli_error_is_one_line_on_stderr(tiny_env, zygote: Zygote) -> None:
    proc = zygote.run("jobs.tune", [], {**tiny_env, "TUNE_NUM_EPOCHS": "zero"})
    assert proc.returncode == cli.EXIT_BAD_INPUT, explain(proc)
    assert proc.stderr == "error: TUNE_NUM_EPOCHS must be an integer, got 'zero'\n"
    assert proc.stdout == ""
