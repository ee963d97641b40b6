"""What the trials' retries cost: the failures Tune retried and the epochs trained again.

Each failure is one Tune retried (a reclaimed Spot node, a process the memory monitor
killed, an error the stage allows), read from the trial's own files once fit() returns,
for results.json's `compute.retries`.

Tune appends every failure of a trial to the trial's error.txt ("Failure # N (occurred at
TIME)", then the error), whether or not the trial ended errored. A retry trains again what
the trial had done since its last checkpoint: the epochs it reports a second time (from
its result rows, restored runs included), plus the epoch in flight at the failure, which
no row records and is counted as one whole epoch (at most one, with a checkpoint every
epoch: SPOT=true or the checkpoint stage). The last failure of a trial that ended errored
was not retried: it is not counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ERROR_FILE = "error.txt"
_FAILURE = re.compile(r"^Failure # \d+ \(occurred at (\S+)\)\s*$")


@dataclass(frozen=True)
class Failure:
    trial_id: str
    at: str  # Tune's timestamp, e.g. 2026-12-07_21-53-28
    error: str  # the first line of what Tune recorded


def failures(trial_id: str, trial_dir: Path) -> list[Failure]:
    """Every failure Tune recorded for the trial, oldest first."""
    try:
        lines = (trial_dir / ERROR_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for i, line in enumerate(lines):
        found = _FAILURE.match(line)
        if found:
            error = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out.append(Failure(trial_id, found.group(1), error[:300]))
    return out


def reported_twice(epochs: Sequence[int]) -> int:
    """Epochs a trial reported more than once: trained again by a retry."""
    return len(epochs) - len(set(epochs))


Trial = tuple[str, Path, Sequence[int], bool]  # id, folder, its rows' epochs, ended errored


def summarize(trials: Iterable[Trial]) -> dict[str, Any]:
    """`compute.retries`: the failures Tune retried, and what they trained again."""
    seen: list[Failure] = []
    twice = 0
    for trial_id, trial_dir, epochs, errored in trials:
        recorded = failures(trial_id, trial_dir)
        seen += recorded[:-1] if errored else recorded  # an errored trial's last: no retry
        twice += reported_twice(epochs)
    return {
        "failures": [asdict(f) for f in seen],
        "trials_hit": len({f.trial_id for f in seen}),
        "trial_epochs_reported_twice": twice,
        "trial_epochs_redone": twice + len(seen),
    }


def from_result(trial_id: str, result: Any) -> Trial:
    """The summarize() entry of a ray.tune.Result."""
    frame = getattr(result, "metrics_dataframe", None)
    epochs = [] if frame is None or "epoch" not in frame else frame["epoch"].dropna().tolist()
    return trial_id, Path(str(result.path)), [int(e) for e in epochs], result.error is not None
