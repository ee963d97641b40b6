"""MNIST-format files: find the four IDX files under DATA_DIR, decode and check them.

numpy only, no torch: the driver checks the data before any cluster work (`validate_dataset`)
and `make data` finds it staged (`python -m jobs.core.idx`; torchvision only to download it)
without importing torch, which only the trials need (jobs.core.data makes tensors of it).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from jobs.core.parsers import ConfigError

# Folder names torchvision uses under its root, per dataset.
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
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


def stage(data_dir: str, dataset: str) -> Path:
    """Download the dataset once with torchvision (needs network). Used by `make data`."""
    existing = find_idx_dir(data_dir, dataset)
    if existing is not None:
        return existing
    from torchvision import datasets  # only to download: ~5 s of imports

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
