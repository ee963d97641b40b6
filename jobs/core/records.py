"""What a run leaves: a typed summary, written as results.json and results.csv and printed.

results.json schema (the interface other tools read): stage, metric, mode, best {trial_id,
config, metrics}, trials [{trial_id, status, epochs, config, metrics, error (errored trials
only: one line)}], counts {completed, early_stopped, errored}, wall_time_s, compute.
Status: `completed` (ran every epoch), `early_stopped` (a scheduler, Stopper or time limit
ended it), `errored`.

One table, `TABLE`, is both the printed leaderboard and results.csv: the walkthrough's
result-dataframe columns (`loss`, `training_iteration`, `config/lr`) next to ours.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.core import cost

RESULTS_FILE = "results.json"
CSV_FILE = "results.csv"
STATUSES = ("completed", "early_stopped", "errored")
# Metrics worth keeping per trial; Tune adds many bookkeeping keys we leave out.
KEPT_METRICS = (
    "epoch",
    "loss",
    "val_loss",
    "val_accuracy",
    "best_val_loss",
    "best_val_accuracy",
    "epoch_s",
    "train_images_per_s",
    "start_epoch",
    "peak_rss_mib",
    "assigned_gpus",
    "on_cuda",
    "world_size",
    "time_total_s",
    "training_iteration",
    "checkpoint_path",
)
_TRIAL_DIR_ID = re.compile(r"_([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?:_|$)")
# Ray's wording for a worker its memory monitor killed (raylet's OOM message), and the
# numbers in it.
MEMORY_KILL = "running low on memory"
_NODE_USE = re.compile(r"was ([\d.]+GB) used / ([\d.]+GB) limit")
_KILLED_USE = re.compile(r"actual memory used=([\d.]+GB)")

History = Sequence[Mapping[str, Any]]  # one row per epoch: epoch, loss, val_loss, ...


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    status: str
    epochs: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None  # one line, for an errored trial (error_line)

    @property
    def killed_for_memory(self) -> bool:
        return self.error is not None and self.error.startswith((MEMORY_KILLED, OOM_KILLED))

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["error"] is None:
            del data["error"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialRecord:
        return cls(
            data["trial_id"],
            data["status"],
            int(data["epochs"]),
            data["config"],
            data["metrics"],
            data.get("error"),
        )


@dataclass
class Summary:
    stage: str
    metric: str
    mode: str
    trials: list[TrialRecord]
    wall_time_s: float
    compute: dict[str, Any] = field(default_factory=dict)  # set by jobs.core.plots

    def __post_init__(self) -> None:
        self.trials = sorted(self.trials, key=lambda r: r.trial_id)

    def _key(self, trial: TrialRecord) -> float:
        value = trial.metrics.get(self.metric)
        if value is None:
            return math.inf
        return value if self.mode == "min" else -value

    def ranked(self) -> list[TrialRecord]:
        """Trials best first on the experiment's metric; trials without it last."""
        return sorted(self.trials, key=self._key)

    @property
    def best(self) -> TrialRecord | None:
        ranked = self.ranked()
        if not ranked or ranked[0].metrics.get(self.metric) is None:
            return None
        return ranked[0]

    @property
    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.trials) for status in STATUSES}

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "stage": self.stage,
            "metric": self.metric,
            "mode": self.mode,
            "best": None
            if best is None
            else {"trial_id": best.trial_id, "config": best.config, "metrics": best.metrics},
            "trials": [r.as_dict() for r in self.trials],
            "counts": self.counts,
            "wall_time_s": round(self.wall_time_s, 3),
            **({"compute": self.compute} if self.compute else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            data["stage"],
            data["metric"],
            data["mode"],
            [TrialRecord.from_dict(t) for t in data["trials"]],
            float(data["wall_time_s"]),
            dict(data.get("compute") or {}),
        )


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


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


MEMORY_KILLED = "killed by Ray's memory monitor"
# A worker process that died without a word (SIGKILL): Ray names the OOM killer first among
# the causes. Beside a memory limit (a pod's) that is the kernel's answer to a trial whose
# memory grew faster than Ray's memory monitor samples (every 250 ms).
OOM_KILLED = "killed, most likely by the out-of-memory killer at its container's memory limit"


def error_line(error: str) -> str:
    """One line for a trial's error: the memory monitor's numbers, or the error's last line."""
    if MEMORY_KILL in error:
        parts = [MEMORY_KILLED]
        killed, node = _KILLED_USE.search(error), _NODE_USE.search(error)
        if killed:
            parts.append(f"the killed worker held {killed.group(1)}")
        if node:
            parts.append(f"its node had {node.group(1)} of {node.group(2)} in use")
        return "; ".join(parts)
    if "Worker exit type: SYSTEM_ERROR" in error and "OOM killer" in error:
        return f"{OOM_KILLED} (Ray: its worker process died, exit type SYSTEM_ERROR)"
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "unknown error"
    return last if len(last) <= 300 else last[:297] + "..."


def record(
    trial_id: str,
    errored: bool,
    planned_epochs: int,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: History = (),
    error: str | None = None,
) -> TrialRecord:
    """A TrialRecord from a trial's last metrics and its per-epoch history."""
    kept = {k: metrics[k] for k in KEPT_METRICS if k in metrics}
    val_losses = _finite(r.get("val_loss") for r in history)
    accuracies = _finite(r.get("val_accuracy") for r in history)
    if val_losses:
        kept["best_val_loss"] = min(val_losses)
    if accuracies:
        kept["best_val_accuracy"] = max(accuracies)
    epochs = int(metrics.get("epoch", 0) or 0)
    return TrialRecord(
        trial_id,
        trial_status(errored, epochs, planned_epochs),
        epochs,
        _clean(dict(config)),
        _clean(kept),
        error_line(error) if errored and error else None,
    )


def record_from_result(result: Any, num_epochs: int, history: History = ()) -> TrialRecord:
    """A TrialRecord from a ray.tune.Result."""
    metrics = dict(result.metrics or {})
    trial_id = metrics.get("trial_id")
    if not trial_id:
        match = _TRIAL_DIR_ID.search(os.path.basename(str(result.path)))
        trial_id = match.group(1) if match else os.path.basename(str(result.path))
    config = dict(result.config or {})
    # A restored experiment keeps its own epoch count, whatever the current settings say.
    planned = int(config.get("num_epochs", num_epochs))
    error = None if result.error is None else str(result.error)
    return record(trial_id, error is not None, planned, config, metrics, history, error)


# --- the one table: leaderboard and results.csv ---------------------------------------------


def _device_seconds(summary: Summary, trial: TrialRecord) -> float | None:
    units = summary.compute.get("device_units_per_trial")
    spent = trial.metrics.get("time_total_s")
    return None if units is None or spent is None else round(float(spent) * float(units), 2)


Column = tuple[str, Callable[[Summary, TrialRecord], Any]]
TABLE: tuple[Column, ...] = (
    ("trial_id", lambda s, t: t.trial_id),
    ("status", lambda s, t: t.status),
    # The walkthrough's result dataframe: loss, training_iteration, config/lr.
    ("loss", lambda s, t: t.metrics.get("loss")),
    ("training_iteration", lambda s, t: t.metrics.get("training_iteration", t.epochs)),
    ("epoch", lambda s, t: t.epochs),
    ("config/lr", lambda s, t: t.config.get("lr")),
    ("config/batch_size", lambda s, t: t.config.get("batch_size")),
    # Ours: validation metrics of the last epoch and the best epoch, and the compute spent.
    ("val_loss", lambda s, t: t.metrics.get("val_loss")),
    ("val_accuracy", lambda s, t: t.metrics.get("val_accuracy")),
    ("best_val_loss", lambda s, t: t.metrics.get("best_val_loss")),
    ("time_total_s", lambda s, t: t.metrics.get("time_total_s")),
    ("device_seconds", _device_seconds),
)
COLUMNS = ("rank", *(name for name, _ in TABLE))


def rows(summary: Summary) -> list[list[Any]]:
    """The table's rows, best trial first."""
    return [
        [rank, *(get(summary, t) for _, get in TABLE)] for rank, t in enumerate(summary.ranked(), 1)
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def as_csv(summary: Summary) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([["" if v is None else v for v in row] for row in rows(summary)])
    return out.getvalue()


def aligned(table: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def leaderboard(summary: Summary) -> str:
    """Trials best first as an aligned text table, and a footer with the counts."""
    lines = aligned([list(COLUMNS), *([_fmt(v) for v in row] for row in rows(summary))])
    counts = summary.counts
    footer = (
        f"{summary.stage}: {len(summary.trials)} trials "
        f"({counts['completed']} completed, {counts['early_stopped']} early-stopped, "
        f"{counts['errored']} errored) in {summary.wall_time_s:.1f}s; ranked on "
        f"{summary.metric} ({summary.mode})"
    )
    return "\n".join([*lines, footer])


def error_report(summary: Summary, reserved_mib: int) -> list[str]:
    """A line per errored trial, saying why; for a memory kill, what to raise."""
    lines = []
    for trial in summary.trials:
        if trial.status != "errored":
            continue
        line = f"trial {trial.trial_id} errored: {trial.error or 'see its error.txt'}"
        if trial.killed_for_memory:
            peak = trial.metrics.get("peak_rss_mib")
            seen = (
                f"its last reported peak RSS was {peak:.0f} MiB"
                if isinstance(peak, int | float)
                else "it was killed before its first epoch ended"
            )
            line += (
                f"; it reserved {reserved_mib} MiB (TRIAL_MEMORY_MIB) and {seen}: raise "
                "TRIAL_MEMORY_MIB above the trial's peak, so Ray puts fewer trials on a "
                "node, or give the worker pods more memory"
            )
        lines.append(line)
    return lines


def best_report(summary: Summary) -> str:
    """The walkthrough's `get_best_result()` printout: the best trial's whole config and its
    metrics, the tuned metric first."""
    best = summary.best
    if best is None:
        return f"{summary.stage}: no trial reported {summary.metric}"
    order = [summary.metric, *(k for k in KEPT_METRICS if k != summary.metric)]
    metrics = {k: best.metrics[k] for k in order if k in best.metrics}
    return "\n".join(
        [
            f"best trial {best.trial_id} ({best.status}, {best.epochs} epochs), ranked on "
            f"{summary.metric} ({summary.mode})",
            f"  config:  {json.dumps(best.config, sort_keys=True)}",
            f"  metrics: {json.dumps({k: _clean(v) for k, v in metrics.items()})}",
        ]
    )


# --- the walkthrough's summary: one line per stage --------------------------------------------


def stage_line(summary: Summary) -> dict[str, Any]:
    """One stage's row of the `STAGE=all` summary (the driver prints it as JSON)."""
    best = summary.best
    compute = summary.compute
    cost = compute.get("cost") or {}
    return {
        "stage": summary.stage,
        "trials": len(summary.trials),
        "errored": summary.counts["errored"],
        "metric": summary.metric,
        "best": None if best is None else best.metrics.get(summary.metric),
        "wall_time_s": round(summary.wall_time_s, 1),
        "accelerator_hours": compute.get("accelerator_hours", {}),
        "on_demand_usd": cost.get("on_demand_usd"),
        "spot_usd": cost.get("spot_usd"),
    }


SUMMARY_COLUMNS = ("stage", "trials", "best", "time", "accelerator-hours", "on demand", "Spot")


def summary_table(lines: Sequence[Mapping[str, Any]]) -> str:
    """The `STAGE=all` table: stage, trials, best metric, time, accelerator-hours, cost."""
    table = [list(SUMMARY_COLUMNS)]
    for line in lines:
        best = "-" if line["best"] is None else f"{line['metric']} {line['best']:.4g}"
        hours = cost.hours_text(line["accelerator_hours"], empty="-")
        trials = f"{line['trials']}" + (f" ({line['errored']} errored)" if line["errored"] else "")
        table.append(
            [
                line["stage"],
                trials,
                best,
                f"{line['wall_time_s']:.0f}s",
                hours,
                cost.usd(line["on_demand_usd"]) or "-",
                cost.usd(line["spot_usd"]) or "-",
            ]
        )
    return "\n".join(aligned(table))


# --- files ------------------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> Path:
    """A reader never sees half a file, and two writers at once leave one whole file (each
    writes its own temporary file, then renames it over the path)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def write(experiment_dir: Path, summary: Summary) -> list[Path]:
    """results.json and results.csv."""
    return [
        atomic_write(experiment_dir / RESULTS_FILE, json.dumps(summary.as_dict(), indent=2) + "\n"),
        atomic_write(experiment_dir / CSV_FILE, as_csv(summary)),
    ]


def load(source: Path) -> Summary:
    """A summary from results.json or the experiment folder holding it."""
    path = source / RESULTS_FILE if source.is_dir() else source
    return Summary.from_dict(json.loads(path.read_text()))


def compute_used(
    summary: Summary,
    device: str,
    device_units: float,
    *,
    accelerator: str | None = None,
    nodes: tuple[dict[str, float], float, int] | None = None,
    prices: Mapping[str, Any] | None = None,
    retries: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Trial-epochs and device-seconds spent, against running every trial to the end; with
    `accelerator`, what jobs.core.cost measures from them, the nodes and the prices, and
    what the trials' retries (jobs.core.retries) trained again.

    Device-seconds are trial wall time times the GPUs (or CPUs) a trial held: what a cloud
    bill counts.
    """
    trials = summary.trials
    spent = sum(t.epochs for t in trials)
    full = sum(int(t.config.get("num_epochs", t.epochs)) for t in trials)
    seconds = sum(float(t.metrics.get("time_total_s") or 0.0) for t in trials) * device_units
    compute: dict[str, Any] = {
        "device": device,
        "device_units_per_trial": device_units,
        "trial_epochs": spent,
        "trial_epochs_if_run_to_end": full,
        "trial_epoch_saving": round(full / spent, 3) if spent else None,
        "device_seconds": round(seconds, 2),
    }
    if retries is not None:
        compute["retries"] = dict(retries)
    if accelerator is not None:
        compute |= cost.measured(compute, accelerator, nodes, prices)
    return compute


def history_of(result: Any) -> list[dict[str, Any]]:
    """Per-epoch rows of a ray.tune.Result (Tune's result rows, restored runs included)."""
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or frame.empty or "epoch" not in frame:
        return []
    keep = [c for c in ("epoch", "loss", "val_loss", "val_accuracy") if c in frame]
    rows = frame[keep].dropna(subset=["epoch"]).drop_duplicates(subset=["epoch"], keep="last")
    return rows.sort_values("epoch").to_dict("records")
