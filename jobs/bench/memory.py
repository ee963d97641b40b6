"""Peak memory of trials at the stages' default data size (`make bench-memory`).

About 25 min on 2 cores.

Runs `jobs.tune` (one trial) and `jobs.train` (one trial: its driver and 2 Train workers)
for one epoch on the whole training and validation splits, each on its own local Ray, and
samples the resident memory of every Ray worker process below the stage every 0.2 s, by
process title. Writes jobs/bench/results/memory.json. The reservations TRIAL_MEMORY_MIB
(jobs/core/settings.py) and TRAIN_DRIVER_MEMORY_MIB (jobs/train.py) are
`settings.reservation_mib` of these peaks; tests/unit/test_resources.py checks them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from jobs.core.settings import MEMORY_HEADROOM, reservation_mib

REPO = Path(__file__).resolve().parents[2]
RESULT = Path(__file__).resolve().parent / "results" / "memory.json"
DATA_DIR = os.environ.get("DATA_DIR", "/usr/share/datasets/fashion-mnist")
DATASET = os.environ.get("DATASET", "fashion-mnist")
# Process titles Ray gives the workers that run a stage's code (ray::<actor>.<method>).
ROLES = {
    "trial": "ray::ImplicitFunc",  # a Tune trial (in `train`, the trial drives Train)
    "train_worker": "ray::RayTrainWorker",
}


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = children_of(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def process_title(pid: int) -> str:
    """A process's title (Ray renames its workers `ray::<actor>.<method>`); "" once gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _rss_by_role(pids: list[int]) -> dict[str, float]:
    """The largest resident set of one process per role, MiB."""
    peak: dict[str, float] = {}
    for pid in pids:
        title = process_title(pid)
        role = next((r for r, prefix in ROLES.items() if title.startswith(prefix)), None)
        if role is None:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
        peak[role] = max(peak.get(role, 0.0), rss_kib / 1024)
    return peak


def measure(stage: str) -> dict[str, float]:
    """Run one trial of `stage` for one epoch at the default data size; peaks per role."""
    with tempfile.TemporaryDirectory(prefix="rtk-mem-") as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNE_"))},
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": tmp,
            "STORAGE_PATH": f"{tmp}/storage",
            "DATA_DIR": DATA_DIR,
            "DATASET": DATASET,
            "TUNE_NUM_SAMPLES": "1",
            "TUNE_NUM_EPOCHS": "1",
            "TRIAL_MEMORY_MIB": "0",  # measure what a trial takes, unconstrained
        }
        for name in ("TRAIN_LIMIT", "VAL_LIMIT", "TRIAL_SEEDS", "ACCELERATOR"):
            env.pop(name, None)  # the defaults: the whole splits, on CPU here
        proc = subprocess.Popen(
            [sys.executable, "-m", f"jobs.{stage}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        peak: dict[str, float] = {}

        def sample() -> None:
            while proc.poll() is None:
                for role, mib in _rss_by_role(descendants(proc.pid)).items():
                    peak[role] = max(peak.get(role, 0.0), mib)
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output, _ = proc.communicate()
        sampler.join()
        if proc.returncode != 0:
            sys.exit(f"error: jobs.{stage} exited {proc.returncode}:\n{output[-3000:]}")
        return {role: round(mib, 1) for role, mib in sorted(peak.items())}


def main() -> int:
    started = time.monotonic()
    tune = measure("tune")
    train = measure("train")
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "dataset": DATASET,
        "train_images": 60000,
        "val_images": 10000,
        "tune_trial_peak_rss_mib": tune["trial"],
        "train_driver_peak_rss_mib": train["trial"],
        "train_worker_peak_rss_mib": train["train_worker"],
        "headroom": MEMORY_HEADROOM,
        "wall_s": round(time.monotonic() - started, 1),
    }
    result["trial_memory_mib"] = reservation_mib(
        max(result["tune_trial_peak_rss_mib"], result["train_worker_peak_rss_mib"])
    )
    result["train_driver_memory_mib"] = reservation_mib(result["train_driver_peak_rss_mib"])
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
