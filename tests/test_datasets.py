"""Embedded datasets (digits, mnist-5k), the Dataset container, class selection, limits and the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sqsnn.datasets import DATA_DIR_ENV, Dataset, DatasetError, list_datasets, load_dataset
from sqsnn.datasets.base import stratified_subset


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", val_fraction=0.0)


def test_digits_matches_an_independent_sklearn_split(digits: Dataset) -> None:
    bunch = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        bunch.data / 16.0, bunch.target, test_size=360, stratify=bunch.target, random_state=0
    )
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64)
    assert torch.equal(digits.x_train, torch.from_numpy(x_tr)) and torch.equal(digits.x_test, torch.from_numpy(x_te))
    assert torch.equal(digits.y_train, torch.from_numpy(y_tr).long())
    assert torch.equal(digits.y_test, torch.from_numpy(y_te).long())
    assert digits.x_train.dtype == torch.float64 and digits.y_train.dtype == torch.int64
    assert float(digits.x_train.min()) == 0.0 and float(digits.x_train.max()) == 1.0
    assert (digits.kind, digits.image_shape, digits.n_classes, digits.n_features) == (
        "static",
        (8, 8),
        10,
        64,
    )


def test_digits_split_is_stratified(digits: Dataset) -> None:
    total = np.bincount(load_digits().target)
    test_counts = torch.bincount(digits.y_test, minlength=10).numpy()
    assert np.all(np.abs(test_counts - total * 360 / 1797) < 1.0)  # per class within one sample of exact
    assert digits.x_train.shape[0] + digits.x_test.shape[0] == 1797


def test_mnist_5k_split_shapes_ranges_and_balance() -> None:
    d = load_dataset("mnist-5k", val_fraction=0.0)
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784)
    assert d.image_shape == (28, 28) and d.kind == "static" and d.n_classes == 10
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0
    assert torch.equal(torch.bincount(d.y_train), torch.full((10,), 400))
    assert torch.equal(torch.bincount(d.y_test), torch.full((10,), 100))
    again = load_dataset("mnist-5k", limit_test=20, val_fraction=0.0)
    assert torch.equal(again.x_train, d.x_train)  # fixed split: same train side every load


def test_classes_keep_and_relabel_in_the_given_order(digits: Dataset) -> None:
    d = load_dataset("digits", classes=[7, 2], val_fraction=0.0)
    assert d.n_classes == 2
    for full_x, full_y, x, y in (
        (digits.x_train, digits.y_train, d.x_train, d.y_train),
        (digits.x_test, digits.y_test, d.x_test, d.y_test),
    ):
        keep = (full_y == 7) | (full_y == 2)
        assert torch.equal(x, full_x[keep])  # a subset of the full split, order kept
        assert torch.equal(y, torch.where(full_y[keep] == 7, 0, 1))


def test_limits_take_seeded_stratified_subsets(digits: Dataset) -> None:
    d = load_dataset("digits", limit_train=100, limit_test=30, val_fraction=0.0)
    assert d.x_train.shape == (100, 64) and d.x_test.shape == (30, 64)
    assert torch.equal(torch.bincount(d.y_train, minlength=10), torch.full((10,), 10))
    assert torch.equal(torch.bincount(d.y_test, minlength=10), torch.full((10,), 3))
    full = {tuple(r) for r in digits.x_train.tolist()}
    assert all(tuple(r) in full for r in d.x_train.tolist())
    again = load_dataset("digits", limit_train=100, limit_test=30, val_fraction=0.0)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_test, d.y_test)
    big = load_dataset("digits", limit_train=10_000, val_fraction=0.0)
    assert torch.equal(big.x_train, digits.x_train)  # a limit above the size keeps everything
    both = load_dataset("digits", classes=[0, 1], limit_train=10, val_fraction=0.0)
    assert torch.equal(torch.bincount(both.y_train), torch.tensor([5, 5]))


def test_stratified_subset_allocates_places_by_largest_remainder() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])  # n = 100
    keep = stratified_subset(labels, 7, seed=0)
    # quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1 and the one place left goes to class 0 (fraction .5)
    assert np.bincount(labels[keep]).tolist() == [4, 2, 1]
    assert np.all(np.diff(keep) > 0) and np.array_equal(keep, stratified_subset(labels, 7, seed=0))
    assert not np.array_equal(keep, stratified_subset(labels, 7, seed=1))
    nearly_all = stratified_subset(labels, 99, seed=0)  # 49.5, 29.7, 19.8 -> 49, 29, 19 + 2 leftovers
    assert np.bincount(labels[nearly_all]).tolist() == [49, 30, 20]


def test_limits_close_to_the_full_size_and_below_the_class_count() -> None:
    d = load_dataset("digits", limit_train=1430, limit_test=5, val_fraction=0.0)
    assert d.x_train.shape[0] == 1430 and d.x_test.shape[0] == 5
    assert len(torch.unique(d.y_test)) == 5  # five places, five different classes (largest fractions)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": [3]}, "at least two integer labels"),
        ({"classes": [1, 1]}, "must not repeat"),
        ({"classes": [1, 10]}, r"classes \[10\] do not exist: labels run from 0 to 9"),
        ({"classes": [0, 1.5]}, "integer labels"),
        ({"limit_train": 0}, "limit_train must be a positive integer"),
        ({"T": 5}, "dataset 'digits' has no option"),
    ],
)
def test_bad_selection_and_options_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        load_dataset("digits", **kwargs)  # type: ignore[arg-type]


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'; known datasets: digits, mnist-5k, mnist"):
        load_dataset("cifar")
    assert issubclass(DatasetError, ValueError)


def test_list_datasets_describes_every_loadable_dataset() -> None:
    infos = {i.name: i for i in list_datasets()}
    assert list(infos) == ["digits", "mnist-5k", "mnist", "fmnist", "kmnist", "usps", "mnist-dvs", "temporal-order"]
    assert (infos["digits"].n_train, infos["digits"].n_test, infos["digits"].image_shape) == (
        1437,
        360,
        (8, 8),
    )
    assert (infos["mnist-5k"].n_train, infos["mnist-5k"].n_test) == (4000, 1000)
    dvs = infos["mnist-dvs"]
    assert (dvs.kind, dvs.image_shape, dvs.steps) == ("frames", (26, 26), 20)
    assert {"T", "bin_ms", "resolution", "crop", "test_fraction", "seed", "scales"} <= set(dvs.options)
    assert all(i.source and i.split for i in infos.values())


def test_embedded_datasets_ignore_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digits: Dataset
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    d = load_dataset("digits", tmp_path / "absent")
    assert torch.equal(d.x_test, digits.x_test)
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing cached


def test_dataset_container_validates_shapes_and_labels() -> None:
    x, y = torch.zeros(4, 6, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    ok = Dataset("toy", x, y, x, y, 3, "static", (2, 3))
    assert ok.n_features == 6
    with pytest.raises(ValueError, match=r"x_train must have shape \(N, D\) with D = 2\*2"):
        Dataset("toy", x, y, x, y, 3, "static", (2, 2))
    with pytest.raises(ValueError, match=r"shape \(N, T, D\)"):
        Dataset("toy", x, y, x, y, 3, "frames", (2, 3))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        Dataset("toy", x, y, x, y, 2, "static", (2, 3))
    with pytest.raises(ValueError, match="one label per sample"):
        Dataset("toy", x, y[:3], x, y, 3, "static", (2, 3))
    with pytest.raises(ValueError, match="kind must be one of"):
        Dataset("toy", x, y, x, y, 3, "video", (2, 3))  # type: ignore[arg-type]
