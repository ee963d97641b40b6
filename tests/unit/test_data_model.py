"""IDX decoding and checking, folder layouts, batching, and the model's shape, on small
real IDX files the tests write (tests/support/idx.py)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.core.data import batches, load_split
from jobs.core.idx import find_idx_dir, read_idx, require_idx_dir, validate_dataset
from jobs.core.model import build_model
from jobs.core.parsers import ConfigError
from tests.support.idx import idx_bytes, make_dataset, write_idx


def test_reads_what_was_written(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i.gz", images)), images)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "l", labels)), labels)


def test_dataset_counts_are_checked_end_to_end(tiny_idx: Path) -> None:
    assert validate_dataset(tiny_idx, "fashion-mnist") == {"train": 64, "test": 32}
    with pytest.raises(ConfigError, match="TRAIN_LIMIT=65 is more than the 64 images"):
        validate_dataset(tiny_idx, "fashion-mnist", train_limit=65)
    with pytest.raises(ConfigError, match="VAL_LIMIT=33 is more than the 32 images"):
        validate_dataset(tiny_idx, "fashion-mnist", val_limit=33)


def test_split_is_normalised_and_limited(tiny_idx: Path) -> None:
    split = load_split(str(tiny_idx), "fashion-mnist", "train", 50)
    assert split.images.shape == (50, 1, 28, 28) and split.images.dtype == torch.float32
    # Normalize((0.5,), (0.5,)) maps bytes 0..255 onto -1..1.
    assert split.images.min() >= -1.0 and split.images.max() <= 1.0
    assert split.labels.dtype == torch.int64 and len(split) == 50
    shard = split.shard(1, 2)
    assert len(shard) == 25 and torch.equal(shard.labels, split.labels[1::2])


def test_ranks_get_disjoint_shards_that_cover_the_split(tiny_idx: Path) -> None:
    split = load_split(str(tiny_idx), "fashion-mnist", "train", None)
    shards = [split.shard(rank, 2) for rank in range(2)]
    assert sum(len(s) for s in shards) == len(split) == 64
    rows = [s.images.flatten(1) for s in shards]
    # Every image lands on exactly one rank (the tiny images are all distinct).
    together = torch.cat(rows)
    assert torch.unique(together, dim=0).shape[0] == 64


def test_torchvision_layout_and_uncompressed_files(tmp_path: Path, tiny_idx: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in tiny_idx.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert find_idx_dir(tmp_path, "fashion-mnist") == raw
    assert find_idx_dir(tmp_path, "mnist") is None  # MNIST's folder is "MNIST"
    assert load_split(str(tmp_path), "fashion-mnist", "test", 10).images.shape == (10, 1, 28, 28)


def test_missing_files_raise_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make data"):
        require_idx_dir(tmp_path, "mnist")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:100], r"holds 92 values but its header promises \(1000,\)"),
        (lambda raw: b"\x08\x03" + raw[2:], "is not an unsigned-byte IDX file"),
        (lambda raw: raw[:6], "truncated inside its header"),
    ],
    ids=["truncated-body", "bad-magic", "truncated-header"],
)
def test_damaged_files_are_named_with_what_is_wrong(tmp_path: Path, damage, message) -> None:
    raw = idx_bytes(np.zeros(1000, dtype=np.uint8))
    (tmp_path / "cut").write_bytes(damage(raw))
    with pytest.raises(ConfigError, match=message):
        read_idx(tmp_path / "cut")


def test_a_gzip_stream_cut_short_is_caught(tmp_path: Path) -> None:
    packed = gzip.compress(idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8)))
    (tmp_path / "x.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ConfigError, match="cannot be read to its end"):
        read_idx(tmp_path / "x.gz")


def test_images_and_labels_of_a_split_must_agree(tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "d")
    shutil.copy(folder / "t10k-labels-idx1-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    with pytest.raises(ConfigError, match=r"64 images but train-labels-idx1-ubyte\.gz has 32"):
        validate_dataset(folder, "fashion-mnist")
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(64, 10, dtype=np.uint8))
    with pytest.raises(ConfigError, match="label 10; labels must lie in 0-9"):
        validate_dataset(folder, "fashion-mnist")


def test_batches_cover_the_split(tiny_idx: Path) -> None:
    split = load_split(str(tiny_idx), "fashion-mnist", "train", 60)
    generator = torch.Generator().manual_seed(0)
    sizes = [
        len(y) for _, y in batches(split, 25, shuffle=True, drop_last=True, generator=generator)
    ]
    assert sizes == [25, 25]
    seen = torch.cat([y for _, y in batches(split, 25, shuffle=False, drop_last=False)])
    assert torch.equal(seen, split.labels)


def test_model_takes_one_channel_and_gives_ten_logits() -> None:
    model = build_model()
    assert model.conv1.in_channels == 1
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
