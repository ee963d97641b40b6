"""How many trials share one GPU well: throughput per trial at 1, 2 and 4 trials per device.

`python -m jobs.bench.gpu_share [--device cuda] [--seconds 30] [--counts 1,2,4]`. Torch only,
no Ray: N processes, each one trial's training step (the project's ResNet18 for 1x28x28, batch
128, data already on the device, as a trial holds it), run at once on one device for the same
wall time after a warm-up; prints, and writes to jobs/bench/results/gpu-share-<date>.json,
images/s per process and in total for each N. What GPUS_PER_TRIAL to recommend for a T4
comes from this script run on a T4: a figure from another GPU model does not set it.
`--device cpu` runs the same code on CPU (a check of the script, not a figure for a GPU).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

BATCH = 128
RESULTS = Path(__file__).resolve().parent / "results"


def _trial(device: str, seconds: float, start: Any, out: Any) -> None:
    import torch

    from jobs.core.model import build_model

    torch.manual_seed(0)
    model = build_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(BATCH, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (BATCH,), device=device)
    criterion = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
        optimizer.step()

    for _ in range(5):  # warm-up: cuDNN's algorithm search, allocations
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start.wait()
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        step()
        done += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    out.put(done * BATCH / (time.perf_counter() - began))


def measure(device: str, count: int, seconds: float) -> list[float]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(count), ctx.Queue()
    procs = [ctx.Process(target=_trial, args=(device, seconds, start, out)) for _ in range(count)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=seconds + 600) for _ in procs]
    for p in procs:
        p.join()
    return sorted(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.bench.gpu_share", description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--counts", default="1,2,4")
    parser.add_argument("--dry-run", action="store_true", help="say what it would run")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    if args.dry_run:
        print(f"would run {counts} trials at once on {args.device} for {args.seconds:g} s each")
        return 0
    import torch

    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    out: dict[str, Any] = {"device": name, "batch": BATCH, "seconds": args.seconds}
    for n in counts:
        rates = measure(args.device, n, args.seconds)
        out[f"trials_{n}"] = {
            "per_trial_images_per_s": [round(r, 1) for r in rates],
            "total_images_per_s": round(sum(rates), 1),
        }
        print(f"{n} trial(s) on {name}: {sum(rates):.0f} img/s in total, per trial {rates}")
    base = out[f"trials_{counts[0]}"]["total_images_per_s"]
    for n in counts:
        out[f"trials_{n}"]["total_vs_{counts[0]}"] = round(
            out[f"trials_{n}"]["total_images_per_s"] / base, 2
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"gpu-share-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
