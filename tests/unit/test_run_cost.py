"""What a run cost, measured (jobs/core/cost.py): accelerator-hours, node-hours, what a
scheduler saved, money at the variant's prices; the `STAGE=all` summary line and table; and
the prices the cloud manifests hand the driver (NODE_PRICES)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from jobs import results as results_cli
from jobs import submit
from jobs.core import cost, retries
from jobs.core import records as results
from jobs.core.parsers import ConfigError, node_prices
from tests.support.runs import REPO
from tests.support.summaries import _summary  # 3 trials: 11 trial-epochs of 24, 53 s

PRICES = {
    "gpu_node": {"on_demand": 0.54, "spot": 0.15},
    "head_node": {"on_demand": 0.134, "spot": None},
    "source": "test prices",
}
# Two attempts: the head for an hour in all, T4 worker pods for 1.5 node-hours.
NODES = ({"head": 1.0, "T4": 1.5}, 1.0, 2)


def test_accelerator_hours_and_the_saving_of_early_stopping() -> None:
    compute = results.compute_used(_summary(), "gpu", 1.0, accelerator="T4")
    assert compute["accelerator_hours"] == {"T4": pytest.approx(53 / 3600, abs=1e-5)}
    # 13 trial-epochs not run, at the run's 53/11 accelerator-seconds per trial-epoch.
    assert compute["trial_epochs_saved"] == 13
    saved = compute["accelerator_hours_saved"]["T4"]
    assert saved == pytest.approx(53 / 11 * 13 / 3600, abs=1e-5)
    assert "cost" not in compute and "node_hours" not in compute  # no prices, no attempts


def test_money_prices_the_worker_node_hours_and_the_head_on_demand() -> None:
    compute = results.compute_used(
        _summary(), "gpu", 1.0, accelerator="T4", nodes=NODES, prices=PRICES
    )
    assert compute["attempts"] == 2 and compute["node_hours"] == {"T4": 1.5, "head": 1.0}
    money = compute["cost"]
    assert money["gpu_node_hours"] == 1.5 and money["source"] == "test prices"
    assert money["on_demand_usd"] == pytest.approx(1.5 * 0.54 + 1.0 * 0.134, abs=1e-4)
    # Spot moves the GPU nodes only: the head stays on demand.
    assert money["spot_usd"] == pytest.approx(1.5 * 0.15 + 1.0 * 0.134, abs=1e-4)
    saved = compute["accelerator_hours_saved"]["T4"]
    assert money["saved_on_demand_usd"] == pytest.approx(saved * 0.54, abs=1e-4)
    assert money["saved_spot_usd"] == pytest.approx(saved * 0.15, abs=1e-4)


def test_without_worker_nodes_the_gpus_the_trials_held_are_priced() -> None:
    head_only = ({"head": 0.5}, 0.5, 1)
    compute = results.compute_used(
        _summary(), "gpu", 1.0, accelerator="T4", nodes=head_only, prices=PRICES
    )
    assert compute["cost"]["on_demand_usd"] == pytest.approx(
        53 / 3600 * 0.54 + 0.5 * 0.134, abs=1e-4
    )


def test_no_money_where_no_price_is_known() -> None:
    unknown = {**PRICES, "gpu_node": {"on_demand": 0.526, "spot": None}}
    compute = results.compute_used(
        _summary(), "gpu", 1.0, accelerator="T4", nodes=NODES, prices=unknown
    )
    assert compute["cost"]["spot_usd"] is None and compute["cost"]["saved_spot_usd"] is None
    lines = cost.report_lines(compute)
    assert any(line.startswith("cost: on demand $") for line in lines)
    assert not any("Spot" in line for line in lines)
    # A head without a known price: no total rather than one without the head.
    no_head = {**PRICES, "head_node": {"on_demand": None, "spot": None}}
    compute = results.compute_used(
        _summary(), "gpu", 1.0, accelerator="T4", nodes=NODES, prices=no_head
    )
    assert compute["cost"]["on_demand_usd"] is None and compute["cost"]["spot_usd"] is None
    # A CPU run is not priced as GPU nodes.
    cpu = results.compute_used(_summary(), "cpu", 2.0, accelerator="CPU", prices=PRICES)
    assert cpu["cost"]["on_demand_usd"] is None
    assert not any(line.startswith("cost:") for line in cost.report_lines(cpu))
    assert cost.report_lines(cpu)[0].startswith("compute: CPU core-hours 0.029;")


def test_the_report_lines_state_the_figures() -> None:
    compute = results.compute_used(
        _summary(), "gpu", 1.0, accelerator="T4", nodes=NODES, prices=PRICES
    )
    lines = cost.report_lines(compute)
    assert lines[0] == (
        "compute: accelerator-hours T4 0.015; 11 trial-epochs of 24 if every trial ran to the "
        "end (saved 13, accelerator-hours T4 0.017)"
    )
    assert lines[1].startswith("nodes: node-hours T4 1.500, head 1.000 over 2 attempt(s)")
    assert lines[2] == (
        "cost: on demand $0.94 (saved $0.0094); Spot $0.36 (saved $0.0026) for 1.500 GPU "
        "node-hours and the head; prices: test prices"
    )
    assert cost.report_lines({"device": "cpu"}) == []  # results.json of an older run


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "must be JSON"),
        ("[]", "must be a JSON object"),
        ('{"gpu_node": {"on_demand": 1}}', "head_node must be an object"),
        ('{"gpu_node": {"hourly": 1}, "head_node": {}}', "gpu_node must be an object"),
        ('{"gpu_node": {"spot": -1}, "head_node": {}}', "gpu_node.spot must be a price"),
        ('{"gpu_node": {"spot": "1"}, "head_node": {}}', "gpu_node.spot must be a price"),
        ('{"gpu_node": {"spot": true}, "head_node": {}}', "gpu_node.spot must be a price"),
    ],
)
def test_bad_node_prices_are_refused(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        node_prices(raw, "NODE_PRICES")
    assert node_prices(" ", "NODE_PRICES") is None
    assert node_prices(json.dumps(PRICES), "NODE_PRICES") == PRICES


def _rayjob_env(path: Path) -> dict[str, str]:
    doc = yaml.safe_load(path.read_text())
    head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in head.get("env", [])}


@pytest.mark.parametrize("variant", ["", "eks", "aks"])
def test_every_cloud_manifest_gives_the_driver_its_values_files_prices(variant: str) -> None:
    values = yaml.safe_load((REPO / "k8s" / "values" / f"{variant or 'gke'}.yaml").read_text())[
        "prices"
    ]
    for manifest in sorted((REPO / "k8s" / variant).glob("rayjob-*.yaml")):
        parsed = node_prices(_rayjob_env(manifest)["NODE_PRICES"], "NODE_PRICES")
        assert parsed == {
            "gpu_node": values["t4_node"],
            "head_node": values["head_node"],
            "source": values["source"],
        }, manifest


def test_kind_states_no_prices() -> None:
    for manifest in sorted((REPO / "k8s" / "kind").glob("rayjob-*.yaml")):
        assert "NODE_PRICES" not in _rayjob_env(manifest)


# --- STAGE=all ----------------------------------------------------------------------------------


def test_a_stage_line_and_the_walkthrough_table() -> None:
    summary = _summary()
    summary.compute = results.compute_used(
        summary, "gpu", 1.0, accelerator="T4", nodes=NODES, prices=PRICES
    )
    line = results.stage_line(summary)
    assert line == {
        "stage": "asha",
        "trials": 3,
        "errored": 1,
        "metric": "val_loss",
        "best": summary.best.metrics["val_loss"],
        "wall_time_s": summary.wall_time_s,
        "accelerator_hours": {"T4": pytest.approx(0.01472, abs=1e-5)},
        "on_demand_usd": summary.compute["cost"]["on_demand_usd"],
        "spot_usd": summary.compute["cost"]["spot_usd"],
    }
    header, row = results.summary_table([line]).splitlines()
    assert header.split() == [*results.SUMMARY_COLUMNS[:5], "on", "demand", "Spot"]
    assert row.split()[:4] == ["asha", "3", "(1", "errored)"]
    assert "T4 0.015" in row and "$0.94" in row and "$0.36" in row


def test_the_submitter_reads_each_stages_summary_line_from_its_log() -> None:
    line = {"stage": "tune", "trials": 2}
    logs = f"epoch lines\n[tune] summary: {json.dumps(line)}\n(raylet) a later line\n"
    assert submit.summary_of(logs, "tune") == line
    assert submit.summary_of(logs, "asha") is None
    assert submit.summary_of("[tune] summary: {cut", "tune") is None


def test_results_all_prints_a_line_per_stage_that_has_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = _summary()
    summary.compute = results.compute_used(
        summary, "gpu", 1.0, accelerator="T4", nodes=NODES, prices=PRICES
    )
    results.write(tmp_path / "asha", summary)
    monkeypatch.setenv("STORAGE_PATH", str(tmp_path))
    assert results_cli.main(["all"]) == 0
    out = capsys.readouterr()
    assert "(no results yet for: baseline, tune, checkpoint, train)" in out.err
    lines = out.out.splitlines()
    assert lines[0].split()[0] == "stage" and lines[1].startswith("asha ")
    assert any(line.startswith("[asha] cost: on demand $0.94") for line in lines)
    assert results_cli.main(["all", "--format", "json"]) == 0
    (line,) = json.loads(capsys.readouterr().out)
    assert line["stage"] == "asha" and line["on_demand_usd"] == pytest.approx(0.944)
    assert results_cli.main(["all", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == list(line) and rows[1][0] == "asha"
    assert json.loads(rows[1][rows[0].index("accelerator_hours")]) == line["accelerator_hours"]
    # Nothing at all to show is an error.
    monkeypatch.setenv("STORAGE_PATH", str(tmp_path / "empty"))
    assert results_cli.main(["all"]) == 2
    assert "error: no results for any of the stages" in capsys.readouterr().err


# A trial's error.txt as Tune 2.60 writes it: every failure appended, the error below it
# (this one from the podman runner's reclaim test: the trial's node went away).
ERROR_TXT = """Failure # 1 (occurred at 2026-12-07_21-53-28)
The actor 9722ca54 is unavailable: The actor is temporarily unavailable: RpcError: Socket closed
Failure # 2 (occurred at 2026-12-07_22-10-02)
ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.
"""


def test_retries_count_tunes_failures_and_the_epochs_trained_again(tmp_path: Path) -> None:
    hit, clean = tmp_path / "hit", tmp_path / "clean"
    hit.mkdir()
    clean.mkdir()
    (hit / retries.ERROR_FILE).write_text(ERROR_TXT)
    # The hit trial resumed once from its epoch-2 checkpoint after reporting epoch 3 (the
    # first failure), once from epoch 3 before reporting anything more (the second).
    retried = retries.summarize(
        [("a", hit, [1, 2, 3, 3, 4], False), ("b", clean, [1, 2, 3, 4], False)]
    )
    assert retried["trials_hit"] == 1 and [f["at"] for f in retried["failures"]] == [
        "2026-12-07_21-53-28",
        "2026-12-07_22-10-02",
    ]
    assert retried["failures"][0]["error"].startswith("The actor 9722ca54 is unavailable")
    assert retried["trial_epochs_reported_twice"] == 1
    assert retried["trial_epochs_redone"] == 3  # 1 reported twice + 2 in flight
    assert retries.summarize([("b", clean, [1, 2], False)])["failures"] == []
    # A trial that ended errored: its last failure was not retried, so it redid nothing.
    errored = retries.summarize([("a", hit, [1, 2, 3, 3, 4], True)])
    assert [f["at"] for f in errored["failures"]] == ["2026-12-07_21-53-28"]
    assert errored["trial_epochs_redone"] == 1 + 1  # 1 reported twice + the 1 retried


def test_what_the_retries_trained_again_is_priced_and_printed() -> None:
    retried = {
        "failures": [{"trial_id": "a", "at": "2026-12-07_21-53-28", "error": "node lost"}],
        "trials_hit": 1,
        "trial_epochs_reported_twice": 0,
        "trial_epochs_redone": 1,
    }
    compute = results.compute_used(
        _summary(), "gpu", 1.0, accelerator="T4", nodes=NODES, prices=PRICES, retries=retried
    )
    per_epoch = 53 / 11 / 3600  # the run's accelerator-hours per trial-epoch
    assert compute["accelerator_hours_redone"]["T4"] == pytest.approx(per_epoch, abs=1e-5)
    redone = compute["accelerator_hours_redone"]["T4"]
    assert compute["cost"]["redone_on_demand_usd"] == pytest.approx(redone * 0.54, abs=1e-4)
    assert compute["cost"]["redone_spot_usd"] == pytest.approx(redone * 0.15, abs=1e-4)
    (line,) = [x for x in cost.report_lines(compute) if x.startswith("retries:")]
    assert "1 failure(s) in 1 trial(s) (first at 2026-12-07_21-53-28: node lost)" in line
    assert "1 trial-epoch(s) trained again (0 reported twice, 1 in flight)" in line
    assert f"T4 {redone:.3f}" in line and "on demand $" in line and "Spot $" in line
    # No failure, no line; an older results.json without `retries` prints as before.
    quiet = results.compute_used(
        _summary(),
        "gpu",
        1.0,
        accelerator="T4",
        retries=retried | {"failures": [], "trials_hit": 0, "trial_epochs_redone": 0},
    )
    assert not any(x.startswith("retries:") for x in cost.report_lines(quiet))
