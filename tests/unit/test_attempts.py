"""What outlives an attempt's cluster (jobs/core/attempts.py, `python -m jobs.logs`): every
attempt's driver output and node record on the volume, listed and printed in start order."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from jobs import logs as logs_cli
from jobs.core import attempts
from tests.support.client_path import ABSENT, python, without


def job_env(submission_id: str) -> dict[str, str]:
    """What Ray's JobSupervisor gives a job's driver (RAY_JOB_CONFIG_JSON_ENV_VAR)."""
    config = {"runtime_env": {}, "metadata": {"job_submission_id": submission_id}}
    return {attempts.JOB_CONFIG_ENV: json.dumps(config)}


def test_the_attempt_id_is_the_ray_jobs_submission_id_else_local() -> None:
    assert attempts.attempt_id(job_env("ray-tune-asha-x7k2p")) == "ray-tune-asha-x7k2p"
    # Safe as a file name whatever the submitter chose.
    assert attempts.attempt_id(job_env("a/b c")) == "a-b-c"
    assert attempts.attempt_id({}).startswith("local-")
    assert attempts.attempt_id({attempts.JOB_CONFIG_ENV: "{not json"}).startswith("local-")


@pytest.mark.parametrize(
    ("resources", "kind"),
    [
        ({"CPU": 1, "node:__internal_head__": 1}, "head"),
        ({"CPU": 3, "GPU": 1, "accelerator_type:T4": 1}, "T4"),
        ({"CPU": 3, "GPU": 1}, "GPU"),
        ({"CPU": 2}, "CPU"),
    ],
)
def test_a_node_is_typed_by_its_head_marker_or_accelerator(resources: dict, kind: str) -> None:
    assert attempts.node_type(resources) == kind


def _record(
    folder: Path, stamp: str, job: str, exit_code: int | None, nodes: dict, start: float
) -> None:
    """An attempt of 30 minutes from `start`, with nodes up for the given hours."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stamp}_{job}.log").write_text(f"log of {job}\n")
    rec = attempts.Record(job, start, start + 1800, exit_code)
    for node_id, (kind, hours) in nodes.items():
        rec.nodes[node_id] = attempts.NodeSpan(kind, start, start + hours * 3600)
    (folder / f"{stamp}_{job}.json").write_text(rec.to_json())


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Two attempts of `tune`: the first killed with its cluster, the second finished."""
    folder = tmp_path / "tune.logs"
    _record(folder, "20261201T100000Z", "ray-tune-tune-aaaaa", None, {"h1": ("head", 0.5)}, 1000.0)
    _record(
        folder,
        "20261201T110000Z",
        "ray-tune-tune-bbbbb",
        0,
        {"h2": ("head", 0.5), "w1": ("T4", 0.25), "w2": ("T4", 0.5)},
        1000.0 + 3600,
    )
    return folder


def test_node_hours_add_up_over_every_attempt(logs: Path) -> None:
    hours, wall, count = attempts.node_hours(logs)
    assert count == 2 and wall == pytest.approx(1.0)
    assert hours == pytest.approx({"head": 1.0, "T4": 0.75})


def test_the_list_says_which_attempt_never_finished(logs: Path) -> None:
    found = attempts.attempts(logs)
    assert [f.name for f in found] == [
        "20261201T100000Z_ray-tune-tune-aaaaa",
        "20261201T110000Z_ray-tune-tune-bbbbb",
    ]
    first, second = (attempts.describe(f, n) for n, f in enumerate(found, 1))
    assert "did not finish" in first and "30.0 min" in first
    assert "exit 0" in second and "worker node-hours T4 0.750" in second


def test_archiving_moves_the_attempts_of_the_archived_run_only(logs: Path) -> None:
    """--fresh and a baseline rerun archive the previous experiment with its attempts: those
    that started before its last write. This run's attempts (a failed retry, the running
    one) stay."""
    from jobs.core.outputs import archive

    experiment = logs.parent / "tune"
    experiment.mkdir()
    (experiment / "results.json").write_text("{}")
    os.utime(experiment / "results.json", (1000.0 + 1800, 1000.0 + 1800))  # attempt 1's end
    target = archive(experiment)
    assert sorted(p.name for p in logs.iterdir()) == [
        "20261201T110000Z_ray-tune-tune-bbbbb.json",
        "20261201T110000Z_ray-tune-tune-bbbbb.log",
    ]
    assert sorted(p.name for p in (target / "logs").iterdir()) == [
        "20261201T100000Z_ray-tune-tune-aaaaa.json",
        "20261201T100000Z_ray-tune-tune-aaaaa.log",
    ]


def test_a_recorded_run_tees_its_output_and_records_how_it_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = tmp_path / "asha"
    with attempts.recorded(experiment) as attempt:
        print("an epoch line")
        print("error: a reason", file=sys.stderr)
        assert attempts.current() is attempt
        attempt.finish(2)
    assert attempts.current() is None
    out = capsys.readouterr()
    assert "an epoch line" in out.out and "error: a reason" in out.err  # still on the terminal
    (files,) = attempts.attempts(tmp_path / "asha.logs")
    text = files.log.read_text()
    assert "an epoch line\n" in text and "error: a reason\n" in text
    record = attempts.read_record(files)
    assert record is not None and record.exit_code == 2
    assert files.name.endswith(record.attempt_id) and record.attempt_id.startswith("local-")
    print("after the run")  # the streams are back: nothing more reaches the log
    assert "after the run" not in files.log.read_text()


def test_a_run_that_raises_is_recorded_as_exit_1(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), attempts.recorded(tmp_path / "tune"):
        print("before the crash")
        raise RuntimeError("boom")
    (files,) = attempts.attempts(tmp_path / "tune.logs")
    assert attempts.read_record(files).exit_code == 1
    text = files.log.read_text()
    assert "before the crash" in text
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text


# --- python -m jobs.logs ------------------------------------------------------------------------


def test_logs_prints_the_last_attempt_by_default_and_lists_them_all(
    logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert logs_cli.main([str(logs)]) == 0
    out = capsys.readouterr()
    assert out.out == "log of ray-tune-tune-bbbbb\n"
    assert "  1  20261201T100000Z_ray-tune-tune-aaaaa" in out.err
    assert "  2  20261201T110000Z_ray-tune-tune-bbbbb" in out.err


@pytest.mark.parametrize("wanted", ["1", "-2", "aaaaa", "100000Z"])
def test_logs_picks_an_attempt_by_number_or_job_id(
    logs: Path, wanted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert logs_cli.main([str(logs), "--attempt", wanted]) == 0
    assert capsys.readouterr().out == "log of ray-tune-tune-aaaaa\n"


def test_logs_reads_a_stage_under_storage_path_and_its_experiment_folder(
    logs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_PATH", str(logs.parent))
    assert logs_cli.main(["tune", "--list"]) == 0
    assert capsys.readouterr().out.count("ray-tune-tune-") == 2
    (logs.parent / "tune").mkdir()
    assert logs_cli.main([str(logs.parent / "tune")]) == 0
    assert capsys.readouterr().out == "log of ray-tune-tune-bbbbb\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attempt", "3"], "--attempt 3: there are 2 attempts (1-2)"),
        (["--attempt", "0"], "--attempt 0: there are 2 attempts"),
        (["--attempt", "ray-tune"], "matches 2 attempts"),
        (["--attempt", "zzz"], "matches 0 attempts"),
    ],
)
def test_logs_bad_choice_is_one_error_line_exit_2(
    logs: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert logs_cli.main([str(logs), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_logs_of_a_stage_that_never_ran_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STORAGE_PATH", str(tmp_path))
    assert logs_cli.main(["asha"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no attempt logs in {tmp_path}/asha.logs")
    assert logs_cli.main([str(tmp_path / "nowhere")]) == 2


def test_jobs_logs_needs_neither_ray_nor_pyyaml_nor_the_training_stack(logs: Path) -> None:
    """`make logs` (local) runs jobs.logs with $(PYTHON), the system Python: no venv."""
    absent = without("ray", "yaml", "jinja2", *ABSENT)
    code = f"{absent}\nrunpy.run_module('jobs.logs', run_name='__main__')"
    proc = python(code, "tune", "--attempt", "2", STORAGE_PATH=str(logs.parent))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "log of ray-tune-tune-bbbbb\n"


def test_the_node_sampler_keeps_a_killed_attempts_record_current(tmp_path: Path) -> None:
    """The record is rewritten on every sample, so a run killed with its cluster leaves one
    that says how long it lasted (exit code none)."""
    attempt = attempts.Attempt(tmp_path / "tune", env={})
    attempt.folder.mkdir(parents=True)
    attempt.sample()
    first = attempts.read_record(attempt.files)
    time.sleep(0.05)
    attempt.sample()
    later = attempts.read_record(attempt.files)
    assert first is not None and later is not None
    assert later.updated > first.updated and later.exit_code is None


def test_a_worker_node_that_leaves_while_the_attempt_runs_is_recorded_with_rays_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reclaimed Spot node (or an idle one given back) is listed dead by Ray's node
    table: the record keeps its type, when it was first seen gone, and Ray's reason; the
    list of attempts says how many left. The head is never among them."""
    head, t4 = {attempts.HEAD_RESOURCE: 1.0}, {"GPU": 1.0, "accelerator_type:T4": 1.0}
    tables = [
        ({"h": head, "w": t4}, {}),
        ({"h": head}, {"w": "health check failed", "old": "idle"}),
        ({}, {"w": "health check failed", "h": "head gone"}),
    ]
    monkeypatch.setattr(
        attempts, "_node_table", lambda: tables.pop(0) if len(tables) > 1 else tables[0]
    )
    attempt = attempts.Attempt(tmp_path / "tune", env={})
    attempt.folder.mkdir(parents=True)
    for _ in range(3):
        attempt.sample()
    record = attempts.read_record(attempt.files)
    assert record is not None and list(record.left) == ["w"]  # never seen alive: not ours
    assert (record.left["w"].type, record.left["w"].reason) == ("T4", "health check failed")
    assert record.nodes["w"].last_seen <= record.left["w"].at
    attempt.finish(0)
    assert "1 worker node(s) left while it ran" in attempts.describe(attempt.files, 1)
