"""MNIST-format data as tensors: decode the IDX files once, batch from memory.

The walkthrough builds a torchvision dataset with a per-sample PIL transform and a
DataLoader; every epoch then pays for 60k PIL conversions. Here the four IDX files are
decoded once per process into a normalised float tensor, and batches are slices of that
tensor (on the GPU when the trial has one). Trials never download anything: the files are
staged once, in the image or on the shared volume, under DATA_DIR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from jobs.core.idx import read_pair, require_idx_dir

MEAN, STD = 0.5, 0.5  # the walkthrough's Normalize((0.5,), (0.5,))


@dataclass(frozen=True)
class Split:
    """One split as tensors: images (N, 1, 28, 28) float32 normalised, labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def shard(self, rank: int, world_size: int) -> Split:
        """The rank's interleaved share, as DistributedSampler would give without shuffling."""
        return Split(self.images[rank::world_size], self.labels[rank::world_size])


@lru_cache(maxsize=4)
def load_split(data_dir: str, dataset: str, split: str, limit: int | None = None) -> Split:
    """Decode a split once per process; `limit` keeps the first N images."""
    images, labels = read_pair(require_idx_dir(data_dir, dataset), split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    tensor = torch.from_numpy(images.astype(np.float32)).div_(255.0).sub_(MEAN).div_(STD)
    return Split(tensor.unsqueeze(1).contiguous(), torch.from_numpy(labels.astype(np.int64)))


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    drop_last: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images, labels) mini-batches by slicing the in-memory tensors."""
    n = len(split)
    order = torch.randperm(n, generator=generator).to(split.labels.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield split.images[start : start + batch_size], split.labels[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield split.images[idx], split.labels[idx]
