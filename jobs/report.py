"""What a person opens after a run: results.csv, learning_curves.png, the compute used.

Written next to results.json in `<STORAGE_PATH>/<stage>/` from the per-epoch history of
every trial (Tune's own result rows).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CSV_FILE = "results.csv"
CURVES_FILE = "learning_curves.png"
CSV_COLUMNS = (
    "trial_id",
    "status",
    "epochs",
    "lr",
    "batch_size",
    "num_epochs",
    "last_val_loss",
    "best_val_loss",
    "best_val_accuracy",
    "wall_time_s",
    "device",
    "device_seconds",
)

History = Sequence[Mapping[str, Any]]  # one row per epoch: epoch, loss, val_loss, ...


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


def device_seconds(trial: Mapping[str, Any], device_units: float) -> float:
    """Trial wall time times the GPUs (or CPUs) it held: what a cloud bill counts."""
    return float(trial["metrics"].get("time_total_s") or 0.0) * device_units


def compute_used(
    summary: Mapping[str, Any],
    device: str,
    device_units: float,
) -> dict[str, Any]:
    """Trial-epochs and device-seconds spent, against running every trial to the end."""
    trials = summary["trials"]
    spent = sum(int(t["epochs"]) for t in trials)
    full = sum(int(t["config"].get("num_epochs", t["epochs"])) for t in trials)
    return {
        "device": device,
        "device_units_per_trial": device_units,
        "trial_epochs": spent,
        "trial_epochs_if_run_to_end": full,
        "trial_epoch_saving": round(full / spent, 3) if spent else None,
        "device_seconds": round(sum(device_seconds(t, device_units) for t in trials), 2),
    }


def write_csv(
    path: Path,
    summary: Mapping[str, Any],
    histories: Mapping[str, History],
    device: str,
    device_units: float,
) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for trial in summary["trials"]:
            rows = histories.get(trial["trial_id"], [])
            val_losses = _finite([r.get("val_loss") for r in rows])
            accuracies = _finite([r.get("val_accuracy") for r in rows])
            m = trial["metrics"]
            writer.writerow(
                {
                    "trial_id": trial["trial_id"],
                    "status": trial["status"],
                    "epochs": trial["epochs"],
                    "lr": trial["config"].get("lr"),
                    "batch_size": trial["config"].get("batch_size"),
                    "num_epochs": trial["config"].get("num_epochs"),
                    "last_val_loss": m.get("val_loss"),
                    "best_val_loss": min(val_losses) if val_losses else None,
                    "best_val_accuracy": max(accuracies) if accuracies else None,
                    "wall_time_s": m.get("time_total_s"),
                    "device": device,
                    "device_seconds": round(device_seconds(trial, device_units), 2),
                }
            )
    return path


def plot_curves(
    path: Path,
    summary: Mapping[str, Any],
    histories: Mapping[str, History],
    rungs: Sequence[int] = (),
) -> Path:
    """val_loss per epoch for every trial; early stops marked, the best trial highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = (summary.get("best") or {}).get("trial_id")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for trial in summary["trials"]:
        rows = [r for r in histories.get(trial["trial_id"], []) if r.get("val_loss") is not None]
        if not rows:
            continue
        epochs = [int(r["epoch"]) for r in rows]
        losses = [float(r["val_loss"]) for r in rows]
        label = f"{trial['trial_id']} lr={trial['config'].get('lr', float('nan')):.2g}"
        is_best = trial["trial_id"] == best
        style = {
            "linewidth": 3.0 if is_best else 1.2,
            "alpha": 1.0 if is_best else 0.75,
            "linestyle": "--" if trial["status"] == "early_stopped" else "-",
        }
        if is_best:
            label += " (best)"
        if trial["status"] == "early_stopped":
            label += " (stopped early)"
        (line,) = ax.plot(epochs, losses, marker="o", markersize=3, label=label, **style)
        if trial["status"] == "early_stopped":
            ax.plot(epochs[-1], losses[-1], marker="X", markersize=11, color=line.get_color())
        if trial["status"] == "errored":
            ax.plot(epochs[-1], losses[-1], marker="s", markersize=9, color="black")
    for i, rung in enumerate(rungs):
        ax.axvline(
            rung,
            color="grey",
            linestyle=":",
            linewidth=1,
            label="ASHA rung (trials cut here)" if i == 0 else None,
        )
    values = [
        float(r["val_loss"])
        for h in histories.values()
        for r in h
        if isinstance(r.get("val_loss"), int | float) and r["val_loss"] > 0
    ]
    if values and max(values) / min(values) > 50:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (cross-entropy)")
    ax.set_title(f"{summary['stage']}: validation loss per epoch, {len(summary['trials'])} trials")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def history_of(result: Any) -> list[dict[str, Any]]:
    """Per-epoch rows of a ray.tune.Result (Tune's result rows, restored runs included)."""
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or frame.empty or "epoch" not in frame:
        return []
    keep = [c for c in ("epoch", "loss", "val_loss", "val_accuracy") if c in frame]
    rows = frame[keep].dropna(subset=["epoch"]).drop_duplicates(subset=["epoch"], keep="last")
    return rows.sort_values("epoch").to_dict("records")


def finish(
    experiment_dir: Path,
    summary: dict[str, Any],
    histories: Mapping[str, History],
    device: str,
    device_units: float,
    rungs: Sequence[int] = (),
) -> list[Path]:
    """Add the compute used to the summary; write results.csv and learning_curves.png."""
    summary["compute"] = compute_used(summary, device, device_units)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_csv(experiment_dir / CSV_FILE, summary, histories, device, device_units),
        plot_curves(experiment_dir / CURVES_FILE, summary, histories, rungs),
    ]
