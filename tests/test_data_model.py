"""IDX decoding on real Fashion-MNIST, folder layouts, batching, and the model's shape."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from jobs.config import ConfigError
from jobs.data import batches, find_idx_dir, load_split, read_idx, require_idx_dir
from jobs.model import build_model


def test_reads_the_real_files(fashion_mnist: Path) -> None:
    images = read_idx(fashion_mnist / "train-images-idx3-ubyte.gz")
    labels = read_idx(fashion_mnist / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert set(labels.tolist()) == set(range(10))
    assert read_idx(fashion_mnist / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)


def test_split_is_normalised_and_limited(fashion_mnist: Path) -> None:
    split = load_split(str(fashion_mnist), "fashion-mnist", "train", 500)
    assert split.images.shape == (500, 1, 28, 28) and split.images.dtype == torch.float32
    assert split.images.min() >= -1.0 and split.images.max() <= 1.0
    assert split.labels.dtype == torch.int64 and len(split) == 500
    shard = split.shard(1, 2)
    assert len(shard) == 250 and torch.equal(shard.labels, split.labels[1::2])


def test_torchvision_layout_and_uncompressed_files(tmp_path: Path, fashion_mnist: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in fashion_mnist.glob("*-ubyte.gz"):
        with gzip.open(gz) as src, open(raw / gz.name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert find_idx_dir(tmp_path, "fashion-mnist") == raw
    assert find_idx_dir(tmp_path, "mnist") is None  # MNIST's folder is "MNIST"
    assert load_split(str(tmp_path), "fashion-mnist", "test", 10).images.shape == (10, 1, 28, 28)


def test_missing_files_raise_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make data"):
        require_idx_dir(tmp_path, "mnist")


def test_truncated_file_is_rejected(tmp_path: Path, fashion_mnist: Path) -> None:
    with gzip.open(fashion_mnist / "t10k-labels-idx1-ubyte.gz") as fh:
        data = fh.read()
    (tmp_path / "cut").write_bytes(data[:100])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "cut")


def test_batches_cover_the_split(fashion_mnist: Path) -> None:
    split = load_split(str(fashion_mnist), "fashion-mnist", "test", 300)
    sizes = [
        len(y)
        for _, y in batches(
            split, 128, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)
        )
    ]
    assert sizes == [128, 128]
    seen = torch.cat([y for _, y in batches(split, 128, shuffle=False, drop_last=False)])
    assert torch.equal(seen, split.labels)


def test_model_takes_one_channel_and_gives_ten_logits() -> None:
    model = build_model()
    assert model.conv1.in_channels == 1
    assert model(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
