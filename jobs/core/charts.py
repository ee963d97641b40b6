"""The report's charts, drawn with matplotlib as inline SVG (no file, no network to view).

matplotlib is already locked and in the image for learning_curves.png; its SVG output keeps a
report self-contained at tens of kilobytes per chart, where Plotly's offline HTML would add
about 4 MB to every report and to the image. Text stays text (`svg.fonttype: none`), which
keeps the files small and searchable.
"""

from __future__ import annotations

import io
import math
from typing import Any

from jobs.core import plots
from jobs.core.runs import Run


def svg(fig: Any) -> str:
    """A Figure as an <svg> element to inline in HTML; the figure is closed."""
    import matplotlib.pyplot as plt

    out = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "report"}):
        fig.savefig(out, format="svg")
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg") :]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves(run: Run) -> str:
    """The learning curves, as learning_curves.png draws them: rungs dotted, early stops X."""
    return svg(plots.draw_curves(run.summary, run.histories, run.rungs))


def search(run: Run) -> str | None:
    """The search: each trial's learning rate against its tuned metric, coloured by the order
    the searcher proposed it; early-stopped trials as X, the best as a star."""
    summary = run.summary
    points = [
        (t, float(t.config["lr"]), float(t.metrics[summary.metric]))
        for t in summary.trials
        if isinstance(t.config.get("lr"), int | float)
        and isinstance(t.metrics.get(summary.metric), int | float)
        and math.isfinite(float(t.metrics[summary.metric]))
    ]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    order = [run.order.get(t.trial_id, i) for i, (t, _, _) in enumerate(points)]
    for marker, status, label in (
        ("o", "completed", "ran to the end"),
        ("X", "early_stopped", "stopped early (its last epoch)"),
        ("s", "errored", "errored (its last epoch)"),
    ):
        chosen = [i for i, (t, _, _) in enumerate(points) if t.status == status]
        if chosen:
            drawn = ax.scatter(
                [points[i][1] for i in chosen],
                [points[i][2] for i in chosen],
                c=[order[i] for i in chosen],
                cmap="viridis",
                vmin=min(order),
                vmax=max(max(order), min(order) + 1),
                marker=marker,
                s=45,
                label=label,
            )
    best = summary.best
    if best is not None and any(t is best for t, _, _ in points):
        ax.scatter(
            [float(best.config["lr"])],
            [float(best.metrics[summary.metric])],
            marker="*",
            s=260,
            facecolors="none",
            edgecolors="crimson",
            linewidths=1.5,
            label="best",
        )
    fig.colorbar(drawn, ax=ax, label="order proposed (0 = first)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (lr)")
    ax.set_ylabel(f"{summary.metric} ({summary.mode})")
    ax.set_title("the search: what was tried, in order")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return svg(fig)


def timeline(run: Run) -> str | None:
    """Each attempt as a bar from its start to its last update (green: exit 0, red: failed,
    grey: never ended), its nodes below it (one thin bar per node type's first-to-last
    sighting) and a red tick where a worker node left."""
    recorded = [(a, a.record) for a in run.attempts if a.record is not None]
    if not recorded:
        return None
    plt = _pyplot()
    origin = min(r.started for _, r in recorded)
    rows: list[tuple[str, float, float, str]] = []  # label, start min, length min, colour
    ticks: list[tuple[int, float]] = []
    for number, (_attempt, rec) in enumerate(recorded, 1):
        colour = "grey" if rec.exit_code is None else ("seagreen" if rec.exit_code == 0 else "red")
        start = (rec.started - origin) / 60
        length = max((rec.updated - rec.started) / 60, 0.02)
        rows.append((f"attempt {number}", start, length, colour))
        for span_type in sorted({s.type for s in rec.nodes.values()}):
            spans = [s for s in rec.nodes.values() if s.type == span_type]
            first = min(s.first_seen for s in spans)
            last = max(s.last_seen for s in spans)
            rows.append(
                (
                    f"  {span_type} x{len(spans)}",
                    (first - origin) / 60,
                    max((last - first) / 60, 0.02),
                    "steelblue",
                )
            )
        for left in rec.left.values():
            ticks.append((len(rows) - 1, (left.at - origin) / 60))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * len(rows)), dpi=100)
    for y, (_label, start, length, colour) in enumerate(rows):
        height = 0.6 if colour != "steelblue" else 0.3
        ax.broken_barh([(start, length)], (y - height / 2, height), color=colour)
    for y, at in ticks:
        ax.plot([at, at], [y - 0.4, y + 0.4], color="red", linewidth=2)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("minutes since the first attempt started")
    ax.set_title("attempts and the nodes each had (Ray's node table, every 5 s)")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return svg(fig)
