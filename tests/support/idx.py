"""Small real IDX files, written the way MNIST's are (big-endian header, unsigned bytes),
so unit tests read real files without the dataset package."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from jobs.core.idx import SPLIT_FILES


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_dataset(folder: Path, train: int = 64, test: int = 32, seed: int = 0) -> Path:
    """The four gzipped IDX files of a tiny MNIST-format dataset: images whose brightness
    encodes their label, so a model can learn them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("test", test)):
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
        images += (labels * 20)[:, None, None].astype(np.uint8)
        image_stem, label_stem = SPLIT_FILES[split]
        write_idx(folder / f"{image_stem}.gz", images)
        write_idx(folder / f"{label_stem}.gz", labels)
    return folder
