"""The experiment report, the index and `make compare`, on hand-written run folders: a
finished run with its attempts and an archived run before it, and a run whose only attempt
died before results.json (read from Tune's trial folders). The report of a real run, opened in
a browser, is tested in tests/integration/test_stages.py."""

from __future__ import annotations

import json
import multiprocessing
import re
import time
from pathlib import Path

import pytest

from jobs import compare as compare_cli
from jobs import report as report_cli
from jobs.core import attempts, compare, outputs, records, report, runs
from tests.support.summaries import HISTORIES, _summary


def _attempt(logs: Path, name: str, started: float, exit_code: int | None, text: str) -> None:
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{name}.log").write_text(text)
    node = attempts.NodeSpan("T4", started + 30, started + 330)
    head = attempts.NodeSpan("head", started, started + 360)
    record = attempts.Record(name, started, started + 360, exit_code, {"n1": node, "h": head})
    (logs / f"{name}.json").write_text(record.to_json())


def _finished(folder: Path, val_loss: float, started: float) -> Path:
    summary = _summary()
    best = next(t for t in summary.trials if t.trial_id == "bbbbbbbb")
    best.metrics["val_loss"] = val_loss
    summary.compute = records.compute_used(summary, "gpu", 1.0, accelerator="T4")
    records.write(folder, summary)
    curves = {"rungs": [2, 8], "trials": HISTORIES}
    (folder / runs.CURVES_FILE).write_text(json.dumps(curves))
    logs = runs.attempts_folder(folder) if folder.name == "asha" else folder / "logs"
    _attempt(logs, f"20261208T0{int(started) % 10}0000Z_raysubmit_a", started, 0, "done\n")
    return folder


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    _finished(tmp_path / "asha.archived-20261207-120000", 0.5, 1.8e9)
    _finished(tmp_path / "asha", 0.4, 1.8e9 + 7200)
    return tmp_path


def test_a_report_holds_the_best_the_board_the_charts_the_attempts_and_the_run_before(
    storage: Path,
) -> None:
    html = report.write(storage / "asha").read_text()
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    # Offline: nothing a browser would fetch (no http(s) source, stylesheet or script).
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "best trial bbbbbbbb" in html  # as the walkthrough prints it
    board = re.findall(r'data-trial="([^"]+)"', html)
    assert board == ["bbbbbbbb", "cccccccc", "aaaaaaaa"]  # best first (val_loss 0.4, 2, 90)
    for trial_id in HISTORIES:
        assert f'id="trial-{trial_id}"' in html  # each trial's curve in the inline SVG
    assert html.count("<svg") == 3  # curves, search, timeline
    assert "trial cccccccc errored" in html
    # The attempt and its driver log, linked relative to the report (a copy keeps working).
    (log,) = re.findall(r'href="([^"]+\.log)"', html)
    assert (storage / "asha" / log).resolve().is_file()
    # The archived run before it, side by side, its report linked.
    assert "Against the run before (asha.archived-20261207-120000)" in html
    assert "0.4</td>" in html and "0.5</td>" in html


def test_the_index_lists_every_run_archived_ones_too_and_links_their_reports(
    storage: Path,
) -> None:
    report.refresh(storage / "asha.archived-20261207-120000")
    report.refresh(storage / "asha")
    html = (storage / report.INDEX_FILE).read_text()
    assert re.findall(r'data-run="([^"]+)"', html) == ["asha", "asha.archived-20261207-120000"]
    assert 'href="asha/report.html"' in html
    assert 'href="asha.archived-20261207-120000/report.html"' in html
    assert "val_loss 0.4" in html and "T4 0.015" in html  # 53 s of trials on one T4


def _write_index(root: str) -> None:
    for _ in range(8):
        report.write_index(Path(root))


def test_two_writers_at_once_leave_one_whole_index(storage: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_write_index, args=(str(storage),)) for _ in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    html = (storage / report.INDEX_FILE).read_text()
    assert html.count("<!doctype html>") == 1 and html.rstrip().endswith("</html>")
    assert not list(storage.glob(".index.html.*"))  # no temporary file left behind


def _trial_folder(experiment: Path, name: str, lr: float, epochs: list[float]) -> None:
    folder = experiment / name
    folder.mkdir(parents=True)
    config = {"lr": lr, "batch_size": 128, "num_epochs": 3}
    (folder / "params.json").write_text(json.dumps(config))
    rows = [
        {"epoch": e, "val_loss": v, "loss": v, "val_accuracy": 0.5} for e, v in enumerate(epochs, 1)
    ]
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epo')
    (folder / "stdout").write_text("epoch 1\n")


def test_a_run_whose_attempt_died_is_read_from_the_trials_and_names_the_failure(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "tune"
    _trial_folder(experiment, "train_trial_1a2b3_00000_0_lr=0.001_2026-12-08", 1e-3, [1.0, 0.8])
    _trial_folder(experiment, "train_trial_1a2b3_00001_1_lr=0.05_2026-12-08", 5e-2, [2.0])
    _attempt(
        attempts.logs_dir(experiment),
        "20261208T010000Z_raysubmit_b",
        time.time() - 3600,  # its record last updated 54 minutes ago: not running
        None,
        "[tune] epoch 1\nRuntimeError: the head went away\n[tune] still here\n",
    )
    run = runs.read(experiment)
    assert not run.finished
    assert run.status == (
        "failed: did not finish (killed, or its cluster deleted): RuntimeError: the head went away"
    )
    assert run.order == {"1a2b3_00000": 0, "1a2b3_00001": 1}
    assert {t.trial_id: t.epochs for t in run.summary.trials} == {
        "1a2b3_00000": 2,
        "1a2b3_00001": 1,
    }
    assert run.summary.best is not None and run.summary.best.trial_id == "1a2b3_00000"
    html = report.write(experiment).read_text()
    assert "No results.json yet" in html and "the head went away" in html
    assert 'href="train_trial_1a2b3_00000_0_lr=0.001_2026-12-08/stdout"' in html


def test_compare_marks_a_metric_worse_only_beyond_the_noise_band(storage: Path) -> None:
    assert compare.is_worse(0.53, 0.5, "min") and not compare.is_worse(0.52, 0.5, "min")
    assert compare.is_worse(0.80, 0.9, "max") and not compare.is_worse(0.86, 0.9, "max")
    this, before = runs.read(storage / "asha"), runs.read(storage / "asha.archived-20261207-120000")
    better = compare.table(this, before, compare.compare(this, before))
    assert "WORSE" not in better and "-0.1 (-20%)" in better
    worse = compare.table(before, this, compare.compare(before, this))
    assert "+0.1 (+25%)  WORSE (by more than 5%)" in worse


def test_the_commands_print_and_refuse_in_one_line(storage: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_PATH", str(storage))
    assert compare_cli.main(["asha"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["asha", "asha.archived-20261207-120000", "difference"]
    assert report_cli.main(["asha", "--dry-run"]) == 0
    assert not (storage / "asha" / report.REPORT_FILE).exists()  # a dry run writes nothing
    assert report_cli.main(["asha"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(storage / "asha" / report.REPORT_FILE)
    assert report_cli.main(["tune"]) == 2
    assert compare_cli.main(["asha.archived-20261207-120000", "--with", "nowhere"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith("error: no run at ") and errors[1].startswith("error: no run at")


def test_a_refused_attempt_does_not_decide_the_run_and_a_live_one_is_running(
    storage: Path,
) -> None:
    logs = runs.attempts_folder(storage / "asha")
    _attempt(logs, "20261208T090000Z_raysubmit_refused", 1.8e9 + 9000, 2, "error: in use\n")
    assert runs.read(storage / "asha").status == "finished, 1 trial(s) errored"
    _attempt(logs, "20261208T100000Z_raysubmit_live", time.time() - 400, None, "epoch 1\n")
    record = logs / "20261208T100000Z_raysubmit_live.json"
    live = json.loads(record.read_text())
    record.write_text(json.dumps({**live, "updated": time.time()}))
    assert runs.read(storage / "asha").status == "running"


def test_an_archived_run_keeps_a_report_whose_links_follow_its_logs(storage: Path) -> None:
    logs = runs.attempts_folder(storage / "asha")
    _attempt(logs, "20261201T000000Z_raysubmit_old", time.time() - 86400, 0, "done\n")
    report.write(storage / "asha")
    target = outputs.archive(storage / "asha")  # moves the attempts before its results in
    html = (target / report.REPORT_FILE).read_text()
    links = re.findall(r'href="([^"]+\.log)"', html)
    assert links == ["logs/20261201T000000Z_raysubmit_old.log"]
    assert (target / links[0]).is_file()
