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
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from jobs.core.values import ConfigError

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


IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (optionally gzipped), reading it to its end; a damaged file is a
    ConfigError naming the file and what is wrong with it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ConfigError(f"{path} cannot be read to its end ({exc})") from None
    if len(raw) < 4:
        raise ConfigError(f"{path} is not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPE or ndim not in (1, 3):
        raise ConfigError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    if len(raw) < 4 + 4 * ndim:
        raise ConfigError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_IDX_DTYPE[dtype_code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(
            f"{path} holds {data.size} values but its header promises {shape} "
            f"({int(np.prod(shape))}): truncated or padded"
        )
    return data.reshape(shape)


def read_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of a split, checked against each other."""
    image_stem, label_stem = SPLIT_FILES[split]
    image_path, label_path = _existing(folder, image_stem), _existing(folder, label_stem)
    assert image_path is not None and label_path is not None  # found by find_idx_dir
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ConfigError(f"{image_path} must hold 28x28 images, has shape {images.shape}")
    if labels.ndim != 1:
        raise ConfigError(f"{label_path} must hold one label per image, has shape {labels.shape}")
    if len(images) != len(labels):
        raise ConfigError(
            f"{image_path.name} has {len(images)} images but {label_path.name} has "
            f"{len(labels)} labels: the files of the {split} split do not belong together"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ConfigError(
            f"{label_path} has label {int(labels.max())}; labels must lie in 0-{NUM_CLASSES - 1}"
        )
    return images, labels


def validate_dataset(
    data_dir: str | Path,
    dataset: str,
    train_limit: int | None = None,
    val_limit: int | None = None,
) -> dict[str, int]:
    """Read all four files to their end and check them (run before any cluster work).

    Returns the item count per split. TRAIN_LIMIT/VAL_LIMIT must not exceed them.
    """
    folder = require_idx_dir(data_dir, dataset)
    counts = {split: len(read_pair(folder, split)[1]) for split in SPLIT_FILES}
    for name, limit, split in (
        ("TRAIN_LIMIT", train_limit, "train"),
        ("VAL_LIMIT", val_limit, "test"),
    ):
        if limit is not None and limit > counts[split]:
            raise ConfigError(
                f"{name}={limit} is more than the {counts[split]} images of the {split} split "
                f"in {folder}"
            )
    return counts


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

    from jobs.core.reading import resolve
    from jobs.registry import load

    try:
        settings = resolve(load("baseline"), sys.argv[1:])
        print(f"{settings.dataset} ready in {stage(settings.data_dir, settings.dataset)}")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
