"""The README's Performance table comes from the newest full and quick benchmark results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.bench import bench


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
