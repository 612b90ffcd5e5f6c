"""The real data files beside the repository (``../shared/data``, or ``$SQSNN_DATA_DIR``): MNIST and
Fashion-MNIST from their IDX files (Fashion-MNIST in its ``fashion-mnist/`` folder), USPS from ``usps.h5``.
Skipped, with the path looked at, where the files are absent."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sqsnn.datasets import DATA_DIR_ENV, load_dataset

DATA_DIR = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parents[1].parent / "shared" / "data")
# the files' published sha256 (the same as DATA_DIR/SHA256SUMS lists)
SHA256 = {
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "usps/usps.h5": "734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36",
}
# class counts of the official test splits (published with the data sets)
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
USPS_TRAIN_COUNTS = [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]


def needs(relative: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (set {DATA_DIR_ENV} to the folder holding mnist/ etc.)")
    if hashlib.sha256(path.read_bytes()).hexdigest() != SHA256[relative]:
        pytest.fail(f"{path} is not the published file (sha256 differs)")
    return path


def test_full_mnist_has_the_official_split_and_a_stratified_validation_part() -> None:
    needs("mnist/t10k-labels-idx1-ubyte.gz")
    d = load_dataset("mnist", DATA_DIR)
    assert d.x_train.shape == (54000, 784) and d.x_val is not None and d.x_val.shape == (6000, 784)
    assert d.x_test.shape == (10000, 784) and d.image_shape == (28, 28)
    assert torch.bincount(d.y_test).tolist() == MNIST_TEST_COUNTS
    train_counts = torch.bincount(d.y_train) + torch.bincount(d.y_val)  # the 60,000 training images
    assert int(train_counts.sum()) == 60000
    # stratified: every class's validation share is within one image of 10 %
    assert torch.all((torch.bincount(d.y_val) - 0.1 * train_counts).abs() <= 1)
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0


def test_fashion_mnist_is_found_in_its_fashion_mnist_folder() -> None:
    needs("fashion-mnist/t10k-labels-idx1-ubyte.gz")
    assert not (DATA_DIR / "fmnist").exists()  # the alias, not an fmnist/ folder, is what is found
    d = load_dataset("fmnist", DATA_DIR, val_fraction=0.0)
    assert d.x_train.shape == (60000, 784) and d.x_val is None
    assert torch.bincount(d.y_test).tolist() == [1000] * 10  # Fashion-MNIST's balanced test split
    mnist = load_dataset("mnist", DATA_DIR, limit_test=100, val_fraction=0.0)
    assert not torch.equal(d.x_test[:100], mnist.x_test)


def test_usps_reads_the_h5_file() -> None:
    path = needs("usps/usps.h5")
    import h5py

    d = load_dataset("usps", DATA_DIR, val_fraction=0.0)
    assert d.image_shape == (16, 16) and d.n_classes == 10
    assert d.x_train.shape == (7291, 256) and d.x_test.shape == (2007, 256)
    assert torch.bincount(d.y_train).tolist() == USPS_TRAIN_COUNTS
    with h5py.File(path, "r") as fh:
        raw = np.asarray(fh["test"]["data"][()], dtype=np.float64)
        labels = np.asarray(fh["test"]["target"][()])
    assert torch.equal(d.x_test, torch.from_numpy(raw)) and d.y_test.tolist() == labels.tolist()
    held = load_dataset("usps", DATA_DIR, classes=[1, 7])
    assert held.x_val is not None and held.y_val is not None
    assert len(held.y_train) + len(held.y_val) == USPS_TRAIN_COUNTS[1] + USPS_TRAIN_COUNTS[7]
