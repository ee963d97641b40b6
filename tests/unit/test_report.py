"""The results table (leaderboard and results.csv), learning_curves.png, the compute used,
and the stored-leaderboard command, on a hand-written three-trial experiment."""

from __future__ import annotations

import csv
import io
import json

import matplotlib.image
import matplotlib.pyplot as plt
import pytest

from jobs import results as results_cli
from jobs.core import plots as report
from jobs.core import records as results
from jobs.core.records import Summary
from tests.support.summaries import HISTORIES, _summary


def test_statuses_and_best_follow_the_epochs_and_the_metric() -> None:
    summary = _summary()
    assert {t.trial_id: t.status for t in summary.trials} == {
        "aaaaaaaa": "early_stopped",  # 2 of 8 epochs
        "bbbbbbbb": "completed",
        "cccccccc": "errored",
    }
    assert summary.counts == {"completed": 1, "early_stopped": 1, "errored": 1}
    assert summary.best is not None and summary.best.trial_id == "bbbbbbbb"
    # Best of the history, not the last epoch: 1/8 + 0.3 and 0.7 + 8/100.
    assert summary.best.metrics["best_val_loss"] == pytest.approx(0.425)
    assert summary.best.metrics["best_val_accuracy"] == pytest.approx(0.78)


def test_ranking_on_a_maximised_metric_puts_the_highest_first() -> None:
    summary = _summary()
    summary.metric, summary.mode = "val_accuracy", "max"
    assert [t.trial_id for t in summary.ranked()] == ["bbbbbbbb", "aaaaaaaa", "cccccccc"]
    summary.metric, summary.mode = "loss", "min"
    assert summary.ranked()[0].trial_id == "bbbbbbbb" and summary.best.trial_id == "bbbbbbbb"


def test_compute_used_counts_the_saving() -> None:
    compute = results.compute_used(_summary(), "gpu", 1.0)
    # 1 + 2 + 8 epochs run, 3 x 8 planned; 3 + 10 + 40 trial-seconds on 1 GPU each.
    assert compute["trial_epochs"] == 11 and compute["trial_epochs_if_run_to_end"] == 24
    assert compute["trial_epoch_saving"] == pytest.approx(24 / 11, abs=1e-3)
    assert compute["device_seconds"] == 53.0


def test_results_csv_has_the_walkthroughs_columns_and_ours(tmp_path) -> None:
    summary = _summary()
    summary.compute = results.compute_used(summary, "cpu", 2.0)
    json_path, csv_path = results.write(tmp_path, summary)
    rows = list(csv.DictReader(csv_path.open()))
    assert {"loss", "training_iteration", "config/lr"} <= set(rows[0])  # the walkthrough's
    assert {"val_loss", "val_accuracy", "status"} <= set(rows[0])  # ours
    # Best first on val_loss: 0.4, then the errored trial's last 2.0, then 90.
    assert [r["trial_id"] for r in rows] == ["bbbbbbbb", "cccccccc", "aaaaaaaa"]
    best = rows[0]
    assert (best["rank"], best["config/lr"], best["training_iteration"]) == ("1", "0.001", "8")
    assert float(best["device_seconds"]) == 80.0  # 40 s x 2 CPUs
    assert rows[1]["status"] == "errored" and rows[1]["val_accuracy"] == ""
    assert json.loads(json_path.read_text())["best"]["trial_id"] == "bbbbbbbb"


def test_printed_table_is_the_csv_and_the_best_trial_is_printed_whole() -> None:
    summary = _summary()
    table = results.leaderboard(summary).splitlines()
    header = next(csv.reader(io.StringIO(results.as_csv(summary))))
    assert table[0].split() == header
    assert table[1].split()[:3] == ["1", "bbbbbbbb", "completed"]
    assert "1 early-stopped" in table[-1] and "ranked on val_loss (min)" in table[-1]
    best = results.best_report(summary).splitlines()
    assert "bbbbbbbb" in best[0]
    config = json.loads(best[1].split(":", 1)[1])
    assert config == {"batch_size": 128, "lr": 0.001, "num_epochs": 8}
    metrics = json.loads(best[2].split(":", 1)[1])
    assert next(iter(metrics)) == "val_loss" and metrics["val_loss"] == 0.4  # tuned metric first


def test_results_json_is_strict_json(tmp_path) -> None:
    summary = Summary(
        "tune",
        "val_loss",
        "min",
        [results.record("aaaaaaaa", False, 1, {"lr": 0.1}, {"epoch": 1, "val_loss": float("nan")})],
        1.0,
    )
    text = results.write(tmp_path, summary)[0].read_text()
    assert "NaN" not in text
    assert results.load(tmp_path).trials[0].metrics["val_loss"] is None
    assert results.load(tmp_path).best is None


def test_learning_curves_show_best_early_stops_errors_and_rungs(tmp_path) -> None:
    fig = report.draw_curves(_summary(), HISTORIES, rungs=(2, 8))
    ax = fig.axes[0]
    curves = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    best = next(line for label, line in curves.items() if label.startswith("bbbbbbbb"))
    stopped = next(line for label, line in curves.items() if label.startswith("aaaaaaaa"))
    assert "(best)" in best.get_label() and best.get_linewidth() == 3.0
    assert "(stopped early)" in stopped.get_label() and stopped.get_linestyle() == "--"
    markers = [line.get_marker() for line in ax.lines]
    assert markers.count("X") == 1 and markers.count("s") == 1  # early stop, error
    rung_lines = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in rung_lines) == [2, 8]
    assert ax.get_yscale() == "log"  # 0.425 to 120 spans far more than 50x
    plt.close(fig)
    path = report.plot_curves(tmp_path / "curves.png", _summary(), HISTORIES, rungs=(2, 8))
    height, width, _ = matplotlib.image.imread(path).shape
    assert (width, height) == (800, 500)


def test_stored_leaderboard_formats(tmp_path, capsys) -> None:
    results.write(tmp_path, _summary())
    assert results_cli.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:2] == ["1", "bbbbbbbb"]
    assert results_cli.main([str(tmp_path / "results.json"), "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["trial_id"] for r in rows] == ["bbbbbbbb", "cccccccc", "aaaaaaaa"]
    assert results_cli.main([str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["trials"][0]["trial_id"] == "bbbbbbbb"
    assert results_cli.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read results from")
