"""results.json: one summary per experiment, and the leaderboard printed from it.

Schema (the interface other tools read): stage, metric, mode, best {trial_id, config,
metrics}, trials [{trial_id, status, epochs, config, metrics}], counts {completed,
early_stopped, errored}, wall_time_s. Status: `completed` (ran every epoch),
`early_stopped` (a scheduler, Stopper or time limit ended it), `errored`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
STATUSES = ("completed", "early_stopped", "errored")
# Metrics worth keeping per trial; Tune adds many bookkeeping keys we leave out.
KEPT_METRICS = (
    "epoch",
    "loss",
    "val_loss",
    "val_accuracy",
    "epoch_s",
    "train_images_per_s",
    "start_epoch",
    "assigned_gpus",
    "on_cuda",
    "time_total_s",
    "training_iteration",
    "checkpoint_path",
)
_TRIAL_DIR_ID = re.compile(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?:_|$)")


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: str
    epochs: int
    config: dict[str, Any]
    metrics: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "status": self.status,
            "epochs": self.epochs,
            "config": self.config,
            "metrics": self.metrics,
        }


def trial_status(errored: bool, epochs: int, num_epochs: int) -> str:
    if errored:
        return "errored"
    return "completed" if epochs >= num_epochs else "early_stopped"


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_from_result(result: Any, num_epochs: int) -> TrialRecord:
    """A TrialRecord from a ray.tune.Result."""
    metrics = dict(result.metrics or {})
    trial_id = metrics.get("trial_id")
    if not trial_id:
        match = _TRIAL_DIR_ID.search(os.path.basename(str(result.path)))
        trial_id = match.group(1) if match else os.path.basename(str(result.path))
    epochs = int(metrics.get("epoch", 0) or 0)
    kept = {k: metrics[k] for k in KEPT_METRICS if k in metrics}
    config = dict(result.config or {})
    # A restored experiment keeps its own epoch count, whatever the current settings say.
    planned = int(config.get("num_epochs", num_epochs))
    return TrialRecord(
        trial_id,
        trial_status(result.error is not None, epochs, planned),
        epochs,
        _clean(config),
        _clean(kept),
    )


def _better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


def summarize(
    stage: str, metric: str, mode: str, records: Iterable[TrialRecord], wall_time_s: float
) -> dict[str, Any]:
    trials = sorted(records, key=lambda r: r.trial_id)
    best: TrialRecord | None = None
    for record in trials:
        value = record.metrics.get(metric)
        if value is None:
            continue
        if best is None or _better(value, best.metrics[metric], mode):
            best = record
    counts = {status: sum(r.status == status for r in trials) for status in STATUSES}
    return {
        "stage": stage,
        "metric": metric,
        "mode": mode,
        "best": None
        if best is None
        else {"trial_id": best.trial_id, "config": best.config, "metrics": best.metrics},
        "trials": [r.as_dict() for r in trials],
        "counts": counts,
        "wall_time_s": round(wall_time_s, 3),
    }


def write(experiment_dir: Path, summary: dict[str, Any]) -> Path:
    """Write results.json atomically (a reader never sees half a file)."""
    experiment_dir.mkdir(parents=True, exist_ok=True)
    path = experiment_dir / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def load(experiment_dir: Path) -> dict[str, Any]:
    return json.loads((experiment_dir / RESULTS_FILE).read_text())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def leaderboard(summary: dict[str, Any], limit: int | None = None) -> str:
    """Trials best first, as an aligned text table."""
    metric, mode = summary["metric"], summary["mode"]

    ranked_trials = ranked(summary)[:limit]
    header = ["rank", "trial_id", "status", "epochs", "lr", "loss", "val_loss", "val_accuracy"]
    rows = [header]
    for rank, trial in enumerate(ranked_trials, 1):
        m = trial["metrics"]
        rows.append(
            [
                str(rank),
                trial["trial_id"],
                trial["status"],
                str(trial["epochs"]),
                _fmt(trial["config"].get("lr")),
                _fmt(m.get("loss")),
                _fmt(m.get("val_loss")),
                _fmt(m.get("val_accuracy")),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    counts = summary["counts"]
    best = summary["best"]
    footer = (
        f"{summary['stage']}: {len(summary['trials'])} trials "
        f"({counts['completed']} completed, {counts['early_stopped']} early-stopped, "
        f"{counts['errored']} errored) in {summary['wall_time_s']:.1f}s; ranked on "
        f"{metric} ({mode})"
    )
    if best is not None:
        footer += f"; best trial {best['trial_id']} {metric}={_fmt(best['metrics'][metric])}"
    return "\n".join([*lines, footer])


def ranked(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Trials best first on the experiment's metric; trials without it last."""
    metric, sign = summary["metric"], 1 if summary["mode"] == "min" else -1

    def key(trial: dict[str, Any]) -> float:
        value = trial["metrics"].get(metric)
        return math.inf if value is None else sign * value

    return sorted(summary["trials"], key=key)


def as_csv(summary: dict[str, Any]) -> str:
    import csv
    import io

    out = io.StringIO()
    columns = ["rank", "trial_id", "status", "epochs", "lr", "loss", "val_loss", "val_accuracy"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for rank, trial in enumerate(ranked(summary), 1):
        m = trial["metrics"]
        writer.writerow(
            [
                rank,
                trial["trial_id"],
                trial["status"],
                trial["epochs"],
                trial["config"].get("lr"),
                m.get("loss"),
                m.get("val_loss"),
                m.get("val_accuracy"),
            ]
        )
    return out.getvalue().rstrip("\n")


FORMATS = ("table", "json", "csv")


def main(argv: list[str]) -> int:
    """`python -m jobs.results PATH|- [--format table|json|csv]`: a stored leaderboard."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m jobs.results", description=main.__doc__)
    parser.add_argument("source", help="results.json, its experiment folder, or - for stdin")
    parser.add_argument("--format", choices=FORMATS, default="table")
    args = parser.parse_args(argv)
    try:
        if args.source == "-":
            summary = json.loads(sys.stdin.read())
        else:
            path = Path(args.source)
            summary = json.loads((path / RESULTS_FILE if path.is_dir() else path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        print(f"error: cannot read results from {args.source}: {err}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps({**summary, "trials": ranked(summary)}, indent=2))
    elif args.format == "csv":
        print(as_csv(summary))
    else:
        print(leaderboard(summary))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
