"""jobs/bench/README.md's Performance table comes from the newest full and quick benchmark
results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.bench import bench
from tests.support.runs import REPO


def _write(folder: Path, name: str, **values: object) -> None:
    (folder / name).write_text(json.dumps(values))


def test_table_takes_the_newest_result_of_each_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    _write(tmp_path, "20261101-000000.json", date="2026-11-01", asha_trial_epochs=99)
    _write(tmp_path, "20261102-000000.json", date="2026-11-02", asha_trial_epochs=122)
    _write(
        tmp_path,
        "20261103-000000-quick.json",
        date="2026-11-03",
        asha_trial_epochs=55,
        trial_images_per_s={"min": 1.0, "median": 611.79, "max": 700.0},
    )
    _write(tmp_path, "latest.json", date="2026-11-04", asha_trial_epochs=1)
    lines = bench.readme_table().splitlines()
    assert "full (2026-11-02)" in lines[0] and "quick (2026-11-03)" in lines[0]
    rows = {line.split("|")[1].strip(" `"): line.split("|")[4:6] for line in lines[2:]}
    assert [c.strip() for c in rows["asha_trial_epochs"]] == ["122", "55"]
    assert [c.strip() for c in rows["trial_images_per_s"]] == ["", "611.8"]  # the median
    assert len(rows) == len(bench.README_ROWS)


def test_readme_performance_section_is_generated_from_the_committed_results() -> None:
    readme = (REPO / "jobs" / "bench" / "README.md").read_text()
    begin, end = readme.index("<!-- bench:begin"), readme.index("<!-- bench:end -->")
    shown = readme[readme.index("\n", begin) + 1 : end].strip()
    assert shown == bench.readme_section().strip(), (
        "jobs/bench/README.md's Performance section is stale: "
        "python -m jobs.bench.bench --readme-table"
    )


def test_findings_quote_the_full_range_of_every_result(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    for i, (ratio, saving) in enumerate([(0.9, 2.0), (1.1, 4.0), (1.0, 3.0)]):
        _write(
            tmp_path,
            f"2026110{i + 1}-000000.json",
            date=f"2026-11-0{i + 1}",
            trial_vs_plain_loop=ratio,
            plain_images_per_s={"median": 100.0},
            compute_bound_images_per_s={"median": 100.0 * ratio},
            background_cpu_during_trial_pct=5.0,
            loader_speedup_vs_tutorial=100.0 + i,
            epoch_speedup_vs_tutorial=1.0,
            asha_trial_epoch_saving_vs_fifo=saving,
            asha_best_vs_fifo=1.01,
            size={"configs": 16, "epochs": 16},
        )
    text = bench.readme_findings()
    assert "lands in 0.9-1.1 across 3 runs" in text
    assert "runs at 0.9-1.1x the plain loop's speed (1 of 3 runs faster)" in text
    assert "2-4x for 16 configs x 16 epochs (3 runs)" in text
    assert "100-102x faster" in text and "within 1.0% of FIFO's" in text
