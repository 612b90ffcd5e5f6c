"""USPS handwritten digits from the widely used ``usps.h5`` packaging (read with h5py).

The file holds two groups, ``train`` and ``test``, each with ``data`` — ``(N, 256)`` float intensities in
[0, 1], 16x16 images in row-major order — and ``target`` — ``(N,)`` integer labels 0..9. The real file
holds 7,291 train / 2,007 test images; any consistent count is accepted. The split is the file's own.
The file is looked for as ``<data dir>/usps/usps.h5`` then ``<data dir>/usps.h5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from sqsnn.datasets.base import Dataset, DatasetError, IntArray, Selection, candidate_dirs, pointing_hint, select_arrays

NAME = "usps"
FILE_NAME = "usps.h5"
SIDE = 16
N_CLASSES = 10


def find_usps_file(root: Path | None) -> Path:
    """``usps.h5`` under ``root`` (see the module docstring).

    Raises:
        DatasetError: no data directory, or no file in the places searched (named in the message).
    """
    if root is None:
        raise DatasetError(
            f"dataset {NAME!r} needs the file {FILE_NAME} and no data directory was given. {pointing_hint()}"
        )
    places = [directory / FILE_NAME for directory in candidate_dirs(root, NAME)]
    for path in places:
        if path.is_file():
            return path
    raise DatasetError(
        f"dataset {NAME!r} needs the file {FILE_NAME}; searched {', '.join(map(str, places))}. {pointing_hint()}"
    )


def _read_side(path: Path, side: str) -> tuple[npt.NDArray[np.float64], IntArray]:
    """``(x (N, 256) float64, y (N,) int64)`` of one group, checked for shape, range and labels."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if side not in fh or "data" not in fh[side] or "target" not in fh[side]:
                raise DatasetError(f"{path} has no /{side}/data and /{side}/target datasets")
            x = np.asarray(fh[side]["data"][()], dtype=np.float64)
            y = np.asarray(fh[side]["target"][()])
    except OSError as exc:
        raise DatasetError(f"cannot read {path} as HDF5: {exc}") from exc
    if x.ndim != 2 or x.shape[1] != SIDE * SIDE:
        raise DatasetError(f"{path}: /{side}/data must be (N, {SIDE * SIDE}), got {x.shape}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{path}: /{side}/target must hold {x.shape[0]} integer labels, got {y.dtype} {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= N_CLASSES):
        raise DatasetError(f"{path}: /{side}/target labels must lie in 0..{N_CLASSES - 1}")
    if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise DatasetError(f"{path}: /{side}/data intensities must lie in [0, 1]")
    return x, y.astype(np.int64)


def load_usps(data_dir: Path | None, selection: Selection) -> Dataset:
    """USPS 16x16 from ``usps.h5`` with the file's own train/test split (intensities already in [0, 1])."""
    path = find_usps_file(data_dir)
    train, test = _read_side(path, "train"), _read_side(path, "test")
    return select_arrays(NAME, (SIDE, SIDE), N_CLASSES, selection, train, test, 1.0)
