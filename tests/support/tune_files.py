"""Reading a Tune experiment folder while it runs: what each trial reported, whether the
experiment snapshot already records a trial as finished, whether a checkpoint is on disk.
The fault tests wait on these states (with a deadline) instead of sleeping."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

TRIAL_PREFIXES = ("train_trial_", "train_driver_")


def trial_dirs(experiment: Path) -> list[Path]:
    if not experiment.is_dir():
        return []
    return sorted(
        p for p in experiment.iterdir() if p.is_dir() and p.name.startswith(TRIAL_PREFIXES)
    )


def reported_epochs(trial_dir: Path) -> list[int]:
    """The `epoch` of every result Tune recorded for a trial, in order."""
    path = trial_dir / "result.json"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line)["epoch"])
        except (ValueError, KeyError):  # a line being written
            break
    return out


def last_results(experiment: Path) -> dict[str, dict]:
    """Per trial id, the last result Tune recorded for it (its result.json's last row)."""
    out = {}
    for trial_dir in trial_dirs(experiment):
        lines = (trial_dir / "result.json").read_text().splitlines()
        if lines:
            row = json.loads(lines[-1])
            out[row["trial_id"]] = row
    return out


def trial_epochs(experiment: Path) -> dict[str, list[int]]:
    """Per trial folder name, the epochs it reported."""
    return {d.name: reported_epochs(d) for d in trial_dirs(experiment)}


def snapshot_trials(experiment: Path) -> dict[str, dict]:
    """Trial folder name -> what the newest experiment snapshot (experiment_state-*.json, the
    file Tuner.restore reads) records of it: `status`, and the `epoch` and
    `checkpoint_dir_name` of its last result (None before its first)."""
    snapshots = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not snapshots:
        return {}
    try:
        data = json.loads(snapshots[-1].read_text())
    except (OSError, ValueError):  # being replaced
        return {}
    out = {}
    for trial_json, metadata_json in data.get("trial_data", []):
        trial, metadata = json.loads(trial_json), json.loads(metadata_json)
        last = metadata.get("last_result") or {}
        out[trial.get("relative_logdir", "")] = {
            "status": trial.get("status", ""),
            "epoch": last.get("epoch"),
            "checkpoint_dir_name": last.get("checkpoint_dir_name"),
        }
    return out


def snapshot_statuses(experiment: Path) -> dict[str, str]:
    """Trial folder name -> status in the newest experiment snapshot."""
    return {name: trial["status"] for name, trial in snapshot_trials(experiment).items()}


def has_checkpoint(trial_dir: Path) -> bool:
    return any((c / "model.pt").is_file() for c in trial_dir.glob("checkpoint_*"))


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = 600,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll `condition` until it holds; fail after `timeout_s` or once `alive()` is false."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if not alive():
            raise AssertionError(f"the run ended before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
