"""results.csv, learning_curves.png, compute used, and the stored leaderboard formats."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import pytest

from jobs import report, results
from jobs.asha import rungs

SUMMARY = {
    "stage": "asha",
    "metric": "val_loss",
    "mode": "min",
    "best": {"trial_id": "bbbbbbbb", "config": {"lr": 0.001}, "metrics": {"val_loss": 0.4}},
    "trials": [
        {
            "trial_id": "aaaaaaaa",
            "status": "early_stopped",
            "epochs": 2,
            "config": {"lr": 0.1, "batch_size": 128, "num_epochs": 8},
            "metrics": {"val_loss": 90.0, "val_accuracy": 0.1, "loss": 3.0, "time_total_s": 10.0},
        },
        {
            "trial_id": "bbbbbbbb",
            "status": "completed",
            "epochs": 8,
            "config": {"lr": 0.001, "batch_size": 128, "num_epochs": 8},
            "metrics": {"val_loss": 0.4, "val_accuracy": 0.85, "loss": 0.3, "time_total_s": 40.0},
        },
        {
            "trial_id": "cccccccc",
            "status": "errored",
            "epochs": 0,
            "config": {"lr": 0.01, "batch_size": 128, "num_epochs": 8},
            "metrics": {},
        },
    ],
    "counts": {"completed": 1, "early_stopped": 1, "errored": 1},
    "wall_time_s": 60.0,
}
HISTORIES = {
    "aaaaaaaa": [
        {"epoch": 1, "val_loss": 120.0, "val_accuracy": 0.1},
        {"epoch": 2, "val_loss": 90.0, "val_accuracy": 0.1},
    ],
    "bbbbbbbb": [
        {"epoch": e, "val_loss": 1.0 / e + 0.3, "val_accuracy": 0.7 + e / 100} for e in range(1, 9)
    ],
}


def test_asha_rungs_are_epochs_2_and_8() -> None:
    assert rungs() == (2, 8)


def test_compute_used_counts_the_saving() -> None:
    compute = report.compute_used(SUMMARY, "gpu", 1.0)
    assert compute["trial_epochs"] == 10 and compute["trial_epochs_if_run_to_end"] == 24
    assert compute["trial_epoch_saving"] == 2.4 and compute["device_seconds"] == 50.0


def test_csv_has_one_row_per_trial_with_best_values(tmp_path) -> None:
    path = report.write_csv(tmp_path / "results.csv", SUMMARY, HISTORIES, "cpu", 2.0)
    rows = list(csv.DictReader(path.open()))
    assert [r["trial_id"] for r in rows] == ["aaaaaaaa", "bbbbbbbb", "cccccccc"]
    best = rows[1]
    assert float(best["best_val_loss"]) == pytest.approx(0.425)
    assert float(best["best_val_accuracy"]) == pytest.approx(0.78)
    assert float(best["last_val_loss"]) == 0.4 and float(best["device_seconds"]) == 80.0
    assert rows[0]["status"] == "early_stopped" and rows[2]["best_val_loss"] == ""


def test_learning_curves_png_is_a_real_image(tmp_path) -> None:
    path = report.plot_curves(tmp_path / "curves.png", SUMMARY, HISTORIES, rungs=(2, 8))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (800, 500)


def test_stored_leaderboard_formats(tmp_path, capsys) -> None:
    (tmp_path / "results.json").write_text(json.dumps(SUMMARY))
    assert results.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:2] == ["1", "bbbbbbbb"] and "best trial bbbbbbbb" in table[-1]
    assert results.main([str(tmp_path / "results.json"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["trial_id"] for r in rows] == ["bbbbbbbb", "aaaaaaaa", "cccccccc"]
    assert results.main([str(tmp_path), "--format", "json"]) == 0
    ranked = json.loads(capsys.readouterr().out)["trials"]
    assert ranked[0]["trial_id"] == SUMMARY["best"]["trial_id"]
    assert results.main([str(tmp_path / "missing")]) == 2
