"""IDX datasets (mnist, fmnist, kmnist): small valid files written here, plain and gzipped, and the errors
for missing or corrupt files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sqsnn.datasets import DATA_DIR_ENV, DatasetError, load_dataset

H, W = 4, 3  # non-square, so a swapped height/width would show
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        Path(f"{path}.gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_idx_set(directory: Path, n_train: int = 30, n_test: int = 20, gz: tuple[bool, ...] = (False,) * 4):
    rng = np.random.default_rng(0)
    arrays = (
        rng.integers(0, 256, size=(n_train, H, W)),
        np.arange(n_train) % 10,
        rng.integers(0, 256, size=(n_test, H, W)),
        (np.arange(n_test) * 3) % 10,
    )
    for name, array, zipped in zip(FILES, arrays, gz, strict=True):
        write(directory / name, idx_bytes(array), zipped)
    return arrays


@pytest.mark.parametrize("gz", [(False,) * 4, (True,) * 4, (True, False, False, True)])
def test_idx_files_load_plain_and_gzipped(tmp_path: Path, gz: tuple[bool, ...]) -> None:
    x_tr, y_tr, x_te, y_te = make_idx_set(tmp_path, gz=gz)
    d = load_dataset("mnist", tmp_path, val_fraction=0.0)
    assert (d.kind, d.image_shape, d.n_classes) == ("static", (H, W), 10)
    assert d.x_train.shape == (30, H * W) and d.x_test.shape == (20, H * W)
    assert d.x_train.dtype == torch.float64 and d.y_train.dtype == torch.int64
    # row-major pixels scaled by 1/255, labels unchanged, the files' own train/test split and order
    assert torch.equal(d.x_train, torch.from_numpy(x_tr.reshape(30, H * W) / 255.0))
    assert torch.equal(d.x_test, torch.from_numpy(x_te.reshape(20, H * W) / 255.0))
    assert d.y_train.tolist() == y_tr.tolist() and d.y_test.tolist() == y_te.tolist()


def test_per_dataset_subdirectory_and_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, y_tr, _, _ = make_idx_set(tmp_path / "fmnist", n_train=40)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    d = load_dataset("fmnist", val_fraction=0.0)
    assert d.name == "fmnist" and d.y_train.tolist() == y_tr.tolist()
    with pytest.raises(DatasetError, match="kmnist"):
        load_dataset("kmnist")  # its own files are looked for, not fmnist's
    make_idx_set(tmp_path / "other" / "kmnist", n_train=50)
    assert (
        load_dataset("kmnist", tmp_path / "other", val_fraction=0.0).x_train.shape[0] == 50
    )  # data_dir beats the env var


def test_classes_and_limits_apply_to_idx_sets(tmp_path: Path) -> None:
    make_idx_set(tmp_path, n_train=60, n_test=40)
    d = load_dataset("mnist", tmp_path, classes=[4, 0], limit_train=6, val_fraction=0.0)
    assert d.n_classes == 2
    assert torch.equal(torch.bincount(d.y_train), torch.tensor([3, 3]))
    assert d.y_test.tolist() == [0 if y == 4 else 1 for y in ((np.arange(40) * 3) % 10) if y in (0, 4)]


def test_missing_files_name_expected_files_directories_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_idx_set(tmp_path)
    (tmp_path / FILES[2]).unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path)
    message = str(err.value)
    for needle in (*FILES, str(tmp_path / "mnist"), str(tmp_path), "--data-dir", DATA_DIR_ENV):
        assert needle in message
    assert f"{tmp_path} (missing t10k-images-idx3-ubyte)" in message
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DatasetError, match=f"no data directory was given.*--data-dir DIR.*{DATA_DIR_ENV}"):
        load_dataset("mnist")


def corrupt_cases(tmp_path: Path) -> dict[str, tuple[Path, bytes, str]]:
    labels = np.arange(30) % 10
    images = np.zeros((30, H, W))
    return {
        "bad magic": (
            tmp_path / FILES[0],
            idx_bytes(images, 0x09),
            "magic number 0x00000903, expected 0x00000803",
        ),
        "labels as images": (
            tmp_path / FILES[0],
            idx_bytes(labels),
            "magic number 0x00000801, expected 0x00000803",
        ),
        "truncated": (tmp_path / FILES[0], idx_bytes(images)[:-5], r"announces dimensions \(30, 4, 3\)"),
        "short header": (tmp_path / FILES[1], b"\x00\x00", "too short for an IDX header"),
        "count mismatch": (tmp_path / FILES[1], idx_bytes(labels[:29]), r"train images count \(30\) differs"),
        "label range": (
            tmp_path / FILES[3],
            idx_bytes(np.full(20, 10)),
            "test labels must lie in 0..9, found 10",
        ),
        "shape mismatch": (tmp_path / FILES[2], idx_bytes(np.zeros((20, W, H))), "train images are"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "bad magic",
        "labels as images",
        "truncated",
        "short header",
        "count mismatch",
        "label range",
        "shape mismatch",
    ],
)
def test_corrupt_files_are_refused_with_the_file_and_the_fix(tmp_path: Path, case: str) -> None:
    make_idx_set(tmp_path)
    path, payload, reason = corrupt_cases(tmp_path)[case]
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=reason) as err:
        load_dataset("mnist", tmp_path)
    assert FILES[0] in str(err.value) and str(tmp_path) in str(err.value) and DATA_DIR_ENV in str(err.value)


def test_broken_gzip_is_refused(tmp_path: Path) -> None:
    make_idx_set(tmp_path, gz=(True, False, False, False))
    gz = tmp_path / f"{FILES[0]}.gz"
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(DatasetError, match=f"cannot read {gz}"):
        load_dataset("mnist", tmp_path)
