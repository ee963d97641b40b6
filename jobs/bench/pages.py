"""Bench section: the experiment report's size and load time at 4 and at 200 trials.

The runs are written here as a stage writes them (results.json, curves.json, attempt
records), with 8 epochs of per-trial curves like a real asha run's, then rendered by
jobs.core.report and loaded in headless Chromium (selenium, Debian's chromedriver): the
navigation's start to the end of its load event. Skipped, with the reason, without a browser.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from jobs.bench import browser
from jobs.core import attempts, records, report, runs

EPOCHS = 8


def write_run(folder: Path, trials: int, seed: int = 0) -> None:
    """A finished asha-like run of `trials` trials: curves, ASHA-style stops, two attempts."""
    rng = random.Random(seed)
    rows, histories = [], {}
    for i in range(trials):
        trial_id = f"{rng.getrandbits(32):08x}"
        lr = math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))
        epochs = EPOCHS if i % 4 == 0 else rng.choice((2, 2, 8))
        start = 0.5 + abs(math.log10(lr) + 2.5)
        history = [
            {"epoch": e, "val_loss": start / e**0.5 + rng.uniform(0, 0.05), "val_accuracy": 0.8}
            for e in range(1, epochs + 1)
        ]
        last = {**history[-1], "loss": history[-1]["val_loss"], "time_total_s": 6.0 * epochs}
        config = {"num_epochs": EPOCHS, "batch_size": 128, "lr": lr}
        rows.append(records.record(trial_id, False, EPOCHS, config, last, history))
        histories[trial_id] = history
    summary = records.Summary("asha", "val_loss", "min", rows, 60.0 + 6 * trials)
    summary.compute = records.compute_used(summary, "gpu", 1.0, accelerator="T4")
    records.write(folder, summary)
    (folder / runs.CURVES_FILE).write_text(json.dumps({"rungs": [2, 8], "trials": histories}))
    logs = attempts.logs_dir(folder)
    logs.mkdir(parents=True, exist_ok=True)
    for n, exit_code in ((1, None), (2, 0)):
        name = f"20261208T0{n}0000Z_raysubmit_{n}"
        (logs / f"{name}.log").write_text("...\n")
        node = attempts.NodeSpan("T4", 1.8e9 + n * 600, 1.8e9 + n * 600 + 500)
        rec = attempts.Record(name, 1.8e9 + n * 600, 1.8e9 + n * 600 + 550, exit_code, {"n": node})
        (logs / f"{name}.json").write_text(rec.to_json())


def _load_ms(page: Path) -> float | None:
    if browser.missing() is not None:
        return None
    loads = [browser.open_page(page).load_ms for _ in range(3)]
    return round(sorted(loads)[1], 1)  # the median of three


def report_pages(sizes: tuple[int, ...] = (4, 200)) -> dict[str, Any]:
    """report_<n>_trials_kb, _render_s and _load_ms (headless Chromium, median of 3)."""
    out: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="rtk-bench-report-"))
    try:
        for n in sizes:
            folder = root / f"n{n}" / "asha"
            write_run(folder, n)
            started = time.perf_counter()
            page = report.write(folder)
            out[f"report_{n}_trials_render_s"] = round(time.perf_counter() - started, 2)
            out[f"report_{n}_trials_kb"] = round(page.stat().st_size / 1024, 1)
            out[f"report_{n}_trials_load_ms"] = _load_ms(page)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(json.dumps(report_pages(), indent=1))
