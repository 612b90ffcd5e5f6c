"""The validation split every loader can hold out (``val_fraction``, ``val_seed``) and the USPS loader on
generated HDF5 files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sqsnn.datasets import DatasetError, list_datasets, load_dataset


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_digits_validation_is_a_stratified_seeded_part_of_the_training_split() -> None:
    whole = load_dataset("digits", val_fraction=0.0)
    d = load_dataset("digits")
    assert whole.x_val is None and d.x_val is not None and d.y_val is not None
    assert len(d.y_val) == round(0.1 * 1437) and len(d.y_train) + len(d.y_val) == 1437
    # train and validation partition the old training side; the test side is untouched
    assert rows(d.x_train) | rows(d.x_val) == rows(whole.x_train)
    assert not rows(d.x_train) & rows(d.x_val)
    assert torch.equal(d.x_test, whole.x_test) and torch.equal(d.y_test, whole.y_test)
    # stratified: each class's validation count is its share of 144 to within one image
    share = torch.bincount(whole.y_train).double() * len(d.y_val) / len(whole.y_train)
    assert torch.all((torch.bincount(d.y_val).double() - share).abs() < 1)
    assert torch.equal(load_dataset("digits").x_val, d.x_val)  # seeded
    other = load_dataset("digits", val_seed=1)
    assert other.x_val is not None and not torch.equal(other.x_val, d.x_val)


def test_validation_comes_after_class_selection_and_limits() -> None:
    d = load_dataset("digits", classes=[3, 5], limit_train=100, val_fraction=0.2)
    assert d.y_val is not None
    assert len(d.y_train) == 80 and len(d.y_val) == 20
    assert torch.bincount(d.y_val).tolist() == [10, 10]


def test_a_tiny_training_side_still_gets_every_class_in_validation() -> None:
    d = load_dataset("digits", limit_train=40)  # 10 % would be 4 images for 10 classes
    assert d.y_val is not None and sorted(d.y_val.tolist()) == list(range(10))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, True, "0.1"])
def test_bad_fractions_are_refused(bad: object) -> None:
    with pytest.raises(DatasetError, match="val_fraction must lie in"):
        load_dataset("digits", val_fraction=bad)  # type: ignore[arg-type]


def test_too_few_samples_to_stratify_is_refused_with_the_fix() -> None:
    with pytest.raises(DatasetError, match="use a larger training set or val_fraction=0"):
        load_dataset("digits", limit_train=15)


def test_every_dataset_describes_its_validation_split() -> None:
    assert all("validation" in info.split for info in list_datasets())
    assert "usps" in {info.name for info in list_datasets()}


def write_usps(path: Path, n_train: int = 40, n_test: int = 20, **override: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train/data": rng.random((n_train, 256)).astype(np.float32),
        "train/target": (np.arange(n_train) % 10).astype(np.int32),
        "test/data": rng.random((n_test, 256)).astype(np.float32),
        "test/target": (np.arange(n_test) * 7 % 10).astype(np.int32),
    }
    arrays.update(override)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        for key, value in arrays.items():
            fh[key] = value
    return arrays


def test_usps_loads_a_generated_file_from_the_usps_folder(tmp_path: Path) -> None:
    arrays = write_usps(tmp_path / "usps" / "usps.h5")
    d = load_dataset("usps", tmp_path, val_fraction=0.0)
    assert d.image_shape == (16, 16) and d.x_train.dtype == torch.float64
    assert torch.equal(d.x_train, torch.from_numpy(arrays["train/data"].astype(np.float64)))
    assert d.y_test.tolist() == arrays["test/target"].tolist()


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"train/data": np.zeros((40, 255), np.float32)}, r"/train/data must be \(N, 256\)"),
        ({"test/target": np.full(20, 10, np.int32)}, "labels must lie in 0..9"),
        ({"test/data": np.full((20, 256), 2.0, np.float32)}, r"intensities must lie in \[0, 1\]"),
        ({"train/target": np.zeros(39, np.int32)}, "must hold 40 integer labels"),
    ],
)
def test_bad_usps_files_are_refused(tmp_path: Path, override: dict[str, np.ndarray], reason: str) -> None:
    write_usps(tmp_path / "usps.h5", **override)
    with pytest.raises(DatasetError, match=reason):
        load_dataset("usps", tmp_path)


def test_missing_or_unreadable_usps_names_the_places_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"usps.h5.*--data-dir"):
        load_dataset("usps", tmp_path)
    (tmp_path / "usps.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match=r"cannot read .* as HDF5"):
        load_dataset("usps", tmp_path)
