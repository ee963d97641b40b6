"""One-GPU benchmark (run by jobs/bench/gpu.sh on a machine with a CUDA GPU, < 5 min).

Measures, on the full training split: our training loop's images/s and epoch time with
the data resident on the GPU, with and without fp16 mixed precision (torch.autocast +
GradScaler), the walkthrough's loader (per-sample ToTensor/Normalize, DataLoader,
host-to-device copies) against ours, and GPU utilisation sampled by nvidia-smi.
Writes JSON to the path given as the first argument.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.bench.bench import BATCH, DATA_DIR, DATASET, _torchvision_root, stats
from jobs.core.data import batches, load_split
from jobs.core.model import build_model

REPEATS = 3


def epoch(model, optimizer, split, amp: bool, scaler) -> float:
    criterion = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for images, labels in batches(split, BATCH, shuffle=True, drop_last=True, generator=generator):
        with torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext():
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main(out_path: str) -> int:
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    device = torch.device("cuda")
    split = load_split(DATA_DIR, DATASET, "train").to(device)
    n = len(split) - len(split) % BATCH
    sampler = subprocess.Popen(
        [
            "nvidia-smi",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
            "-lms",
            "200",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    out: dict = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "images_per_epoch": n,
        "batch": BATCH,
    }
    for amp in (False, True):
        model = build_model().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        epoch(model, optimizer, split, amp, scaler)  # warm-up (cuDNN autotune, allocator)
        times = [epoch(model, optimizer, split, amp, scaler) for _ in range(REPEATS)]
        key = "amp" if amp else "fp32"
        out[f"epoch_s_{key}"] = stats(times)
        out[f"images_per_s_{key}"] = round(n / statistics.median(times), 1)
    sampler.terminate()
    utilisation = [int(v) for v in sampler.communicate()[0].split() if v.isdigit()]
    out["gpu_utilisation_pct"] = stats(utilisation) if utilisation else None
    # Loader alone: the walkthrough's (host transforms + copies) against ours (GPU slices).
    from torch.utils.data import DataLoader
    from torchvision.datasets import MNIST, FashionMNIST
    from torchvision.transforms import Compose, Normalize, ToTensor

    root = _torchvision_root()
    cls = FashionMNIST if DATASET == "fashion-mnist" else MNIST
    loader = DataLoader(
        cls(
            root=str(root),
            train=True,
            download=False,
            transform=Compose([ToTensor(), Normalize((0.5,), (0.5,))]),
        ),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
    )
    start = time.perf_counter()
    for images, labels in loader:
        images.to(device), labels.to(device)
    torch.cuda.synchronize()
    tutorial = time.perf_counter() - start
    start = time.perf_counter()
    for _ in batches(split, BATCH, shuffle=True, drop_last=True):
        pass
    torch.cuda.synchronize()
    ours = time.perf_counter() - start
    out.update(
        {
            "load_s_tutorial": tutorial,
            "load_s_ours": ours,
            "loader_speedup_vs_tutorial": round(tutorial / ours, 1),
        }
    )
    Path(out_path).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "gpu.json"))
