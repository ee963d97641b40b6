"""The learning curves of a run, drawn as learning_curves.png.

Written next to results.json in `<STORAGE_PATH>/<stage>/` from the per-epoch history of
every trial (Tune's own result rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs.core.records import History, Summary

CURVES_FILE = "learning_curves.png"
LEGEND_TRIALS = 12


def plot_curves(
    path: Path,
    summary: Summary,
    histories: Mapping[str, History],
    rungs: Sequence[int] = (),
) -> Path:
    import matplotlib.pyplot as plt

    fig = draw_curves(summary, histories, rungs)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_curves(
    summary: Summary,
    histories: Mapping[str, History],
    rungs: Sequence[int] = (),
) -> Any:
    """val_loss per epoch for every trial: the best trial's line thick, early-stopped trials
    dashed and ending in an X, errored ones ending in a black square, ASHA's rungs as dotted
    vertical lines; a log scale when losses span more than 50x. Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = summary.best.trial_id if summary.best else None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    # A legend line per trial up to LEGEND_TRIALS; past that only the best is named.
    crowded = len(summary.trials) > LEGEND_TRIALS
    for trial in summary.trials:
        rows = [r for r in histories.get(trial.trial_id, []) if r.get("val_loss") is not None]
        if not rows:
            continue
        epochs = [int(r["epoch"]) for r in rows]
        losses = [float(r["val_loss"]) for r in rows]
        label = f"{trial.trial_id} lr={trial.config.get('lr', float('nan')):.2g}"
        is_best = trial.trial_id == best
        style = {
            "linewidth": 3.0 if is_best else 1.2,
            "alpha": 1.0 if is_best else 0.75,
            "linestyle": "--" if trial.status == "early_stopped" else "-",
        }
        if is_best:
            label += " (best)"
        if trial.status == "early_stopped":
            label += " (stopped early)"
        if crowded and not is_best:
            label = None
        # gid: the curve's element id in an SVG (the report's `trial-<id>`).
        (line,) = ax.plot(
            epochs,
            losses,
            marker="o",
            markersize=3,
            label=label,
            gid=f"trial-{trial.trial_id}",
            **style,
        )
        if trial.status == "early_stopped":
            ax.plot(epochs[-1], losses[-1], marker="X", markersize=11, color=line.get_color())
        if trial.status == "errored":
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
    ax.set_title(f"{summary.stage}: validation loss per epoch, {len(summary.trials)} trials")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no curve at all when every trial errored early
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
