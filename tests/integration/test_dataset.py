"""The real Fashion-MNIST files Debian ships, read and checked as every run reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.core.idx import read_idx, validate_dataset

pytestmark = pytest.mark.quick  # no stage runs here: part of make test-quick


def test_reads_the_real_files(fashion_mnist: Path) -> None:
    images = read_idx(fashion_mnist / "train-images-idx3-ubyte.gz")
    labels = read_idx(fashion_mnist / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert set(labels.tolist()) == set(range(10))
    assert read_idx(fashion_mnist / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
    assert validate_dataset(fashion_mnist, "fashion-mnist") == {"train": 60000, "test": 10000}
