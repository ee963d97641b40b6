"""MNIST-format data: find the IDX files, decode them once, batch from memory.

The walkthrough builds a torchvision dataset with a per-sample PIL transform and a
DataLoader; every epoch then pays for 60k PIL conversions. Here the four IDX files are
decoded once per process into a normalised float tensor, and batches are slices of that
tensor (on the GPU when the trial has one). Trials never download anything: the files are
staged once, in the image or on the shared volume, under DATA_DIR.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from jobs.config import ConfigError

# Folder names torchvision uses under its root, per dataset.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MEAN, STD = 0.5, 0.5  # the walkthrough's Normalize((0.5,), (0.5,))
_IDX_DTYPE = {0x08: np.uint8}


def _candidate_dirs(data_dir: Path, dataset: str) -> list[Path]:
    folder = TORCHVISION_FOLDERS[dataset]
    return [data_dir, data_dir / folder / "raw", data_dir / folder]


def _existing(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_idx_dir(data_dir: str | Path, dataset: str) -> Path | None:
    """The folder under `data_dir` that holds all four IDX files (gzipped or not)."""
    stems = [stem for pair in SPLIT_FILES.values() for stem in pair]
    for folder in _candidate_dirs(Path(data_dir), dataset):
        if all(_existing(folder, stem) for stem in stems):
            return folder
    return None


def require_idx_dir(data_dir: str | Path, dataset: str) -> Path:
    folder = find_idx_dir(data_dir, dataset)
    if folder is None:
        raise ConfigError(
            f"no {dataset} IDX files under DATA_DIR={data_dir}; stage them once with "
            f"`make data DATASET={dataset}` (needs network) or point DATA_DIR at a folder "
            "holding train/t10k images and labels (e.g. /usr/share/datasets/fashion-mnist "
            "with DATASET=fashion-mnist)"
        )
    return folder


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPE:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_DTYPE[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {shape}, got {data.size} values")
    return data.reshape(shape)


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
    folder = require_idx_dir(data_dir, dataset)
    image_stem, label_stem = SPLIT_FILES[split]
    images = read_idx(_existing(folder, image_stem))  # type: ignore[arg-type]
    labels = read_idx(_existing(folder, label_stem))  # type: ignore[arg-type]
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


def stage(data_dir: str, dataset: str) -> Path:
    """Download the dataset once with torchvision (needs network). Used by `make data`."""
    from torchvision import datasets

    existing = find_idx_dir(data_dir, dataset)
    if existing is not None:
        return existing
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[dataset]
    try:
        for train in (True, False):
            cls(root=data_dir, train=train, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError variants
        raise ConfigError(
            f"could not download {dataset} into {data_dir} ({type(exc).__name__}); on a machine "
            "without network copy the four IDX files there, or use DATASET=fashion-mnist with "
            "DATA_DIR=/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)"
        ) from None
    return require_idx_dir(data_dir, dataset)


if __name__ == "__main__":
    import sys

    from jobs.config import resolve

    try:
        settings = resolve("baseline", sys.argv[1:])
        print(f"{settings.dataset} ready in {stage(settings.data_dir, settings.dataset)}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
