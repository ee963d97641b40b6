"""Two runs of a stage side by side: what `make compare` prints and the report's section.

Each line is one figure of both runs and the difference (this run minus the other). The
tuned metric is marked when this run is worse than the other by more than NOISE_BAND of the
other's value: runs of the same settings move by a few per cent with the data order on
CI-sized data, so a smaller difference says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core import cost
from jobs.core.records import aligned
from jobs.core.runs import Run

NOISE_BAND = 0.05  # relative: worse by more than 5% of the other run's value is marked
WORSE = "WORSE"


@dataclass(frozen=True)
class Line:
    name: str
    this: str
    other: str
    difference: str
    worse: bool = False


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _diff(a: float | None, b: float | None, fmt: str = "{:+.4g}") -> str:
    if a is None or b is None:
        return "-"
    text = fmt.format(a - b)
    return f"{text} ({(a - b) / abs(b):+.0%})" if b else text


def _text(value: Any, fmt: str = "{:.4g}") -> str:
    return "-" if value is None else fmt.format(value) if isinstance(value, float) else str(value)


def _best(run: Run) -> tuple[float | None, dict[str, Any]]:
    best = run.summary.best
    if best is None:
        return None, {}
    return _number(best.metrics.get(run.summary.metric)), best.config


def _hours(run: Run) -> float | None:
    hours = run.summary.compute.get("accelerator_hours") or {}
    return float(sum(hours.values())) if hours else None


def _usd(run: Run, kind: str) -> float | None:
    return _number((run.summary.compute.get("cost") or {}).get(f"{kind}_usd"))


def is_worse(this: float, other: float, mode: str) -> bool:
    """Worse in the metric's mode by more than NOISE_BAND of the other's magnitude."""
    band = NOISE_BAND * abs(other)
    return this > other + band if mode == "min" else this < other - band


def compare(this: Run, other: Run) -> list[Line]:
    s = this.summary
    metric = s.metric
    a_best, a_config = _best(this)
    b_best, b_config = _best(other)
    worse = a_best is not None and b_best is not None and is_worse(a_best, b_best, s.mode)
    a_compute = s.compute
    lines = [
        Line("status", this.status, other.status, ""),
        Line(
            f"best {metric} ({s.mode})", _text(a_best), _text(b_best), _diff(a_best, b_best), worse
        ),
        Line("best config", _config(a_config), _config(b_config), ""),
        Line(
            "trials",
            str(len(s.trials)),
            str(len(other.summary.trials)),
            _diff(float(len(s.trials)), float(len(other.summary.trials)), "{:+.0f}"),
        ),
    ]
    for key, label, fmt in (
        ("trial_epochs", "trial-epochs run", "{:+.0f}"),
        ("trial_epochs_saved", "trial-epochs saved (early stops)", "{:+.0f}"),
    ):
        a, b = _number(a_compute.get(key)), _number(other.summary.compute.get(key))
        lines.append(Line(label, _text(a, "{:.0f}"), _text(b, "{:.0f}"), _diff(a, b, fmt)))
    a_wall, b_wall = s.wall_time_s or None, other.summary.wall_time_s or None
    wall = _diff(a_wall, b_wall, "{:+.0f}")
    lines.append(Line("wall time (s)", _text(a_wall, "{:.0f}"), _text(b_wall, "{:.0f}"), wall))
    a_h, b_h = _hours(this), _hours(other)
    on_cpu = cost.CPU in (a_compute.get("accelerator_hours") or {})
    unit = "CPU core-hours" if on_cpu else "accelerator-hours"
    lines.append(Line(unit, _text(a_h, "{:.4f}"), _text(b_h, "{:.4f}"), _diff(a_h, b_h, "{:+.4f}")))
    for kind, label in (("on_demand", "cost on demand (USD)"), ("spot", "cost on Spot (USD)")):
        a, b = _usd(this, kind), _usd(other, kind)
        lines.append(Line(label, _text(a, "{:.4f}"), _text(b, "{:.4f}"), _diff(a, b, "{:+.4f}")))
    return lines


def _config(config: dict[str, Any]) -> str:
    if not config:
        return "-"
    return ", ".join(f"{k}={_text(v, '{:.3g}')}" for k, v in sorted(config.items()))


def table(this: Run, other: Run, lines: list[Line]) -> str:
    """The lines as an aligned table, a marked line ending in WORSE."""
    rows = [["", this.name, other.name, "difference"]]
    for line in lines:
        mark = f"  {WORSE} (by more than {NOISE_BAND:.0%})" if line.worse else ""
        rows.append([line.name, line.this, line.other, line.difference + mark])
    return "\n".join(aligned(rows))
