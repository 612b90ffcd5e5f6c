"""MNIST-format datasets read from the standard IDX files on the user's disk.

``mnist``, ``fmnist`` (Fashion-MNIST) and ``kmnist`` (Kuzushiji-MNIST) ship as four IDX files, each
optionally gzipped (``.gz``)::

    train-images-idx3-ubyte   train-labels-idx1-ubyte   t10k-images-idx3-ubyte   t10k-labels-idx1-ubyte

IDX layout: two zero bytes, a type byte (``0x08`` = unsigned byte), the number of dimensions ``k``, then
``k`` big-endian uint32 sizes and the row-major data. Images are ``(N, H, W)`` (magic ``0x00000803``),
labels ``(N,)`` (magic ``0x00000801``). The real sets hold 60,000 train / 10,000 test 28x28 images; any
consistent count is accepted. The split is the files' own train/test split; pixels are scaled by 1/255.
Besides ``<data dir>/<name>`` and the data dir itself, the folder names of :data:`FOLDER_ALIASES` are
searched (Fashion-MNIST's files often sit in ``fashion-mnist/``).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sqsnn.datasets.base import Dataset, DatasetError, Selection, candidate_dirs, pointing_hint, select_arrays

IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
UBYTE = 0x08
N_CLASSES = 10
FOLDER_ALIASES: dict[str, tuple[str, ...]] = {"fmnist": ("fashion-mnist", "fashion_mnist")}


def read_idx(path: Path, ndim: int) -> npt.NDArray[np.uint8]:
    """Read one unsigned-byte IDX file (plain or ``.gz``) holding a ``ndim``-dimensional array.

    Raises:
        DatasetError: unreadable or truncated file, bad magic number, or a payload size that does not
            match the header.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    want = (UBYTE << 8) | ndim
    if len(raw) < 4:
        raise DatasetError(f"{path} is too short for an IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != want:
        raise DatasetError(f"{path} has IDX magic number 0x{magic:08x}, expected 0x{want:08x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated inside its IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DatasetError(
            f"{path} header announces dimensions {dims} ({size} bytes of data) but holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx_files(name: str, root: Path | None) -> dict[str, Path]:
    """The four IDX files of ``name``: the first directory among ``<root>/<name>``, ``<root>/<alias>``
    (:data:`FOLDER_ALIASES`), ``<root>`` that holds all four (each plain or ``.gz``).

    Raises:
        DatasetError: naming the expected files, the directories searched and how to point at them.
    """
    expected = ", ".join(IDX_FILES.values())
    if root is None:
        raise DatasetError(
            f"dataset {name!r} needs the IDX files {expected} (each plain or .gz) and no data directory "
            f"was given. {pointing_hint()}"
        )
    searched = []
    for directory in candidate_dirs(root, name, FOLDER_ALIASES.get(name, ())):
        found: dict[str, Path] = {}
        for key, base in IDX_FILES.items():
            for file_name in (base, base + ".gz"):
                if (directory / file_name).is_file():
                    found[key] = directory / file_name
                    break
        if len(found) == len(IDX_FILES):
            return found
        missing = [IDX_FILES[k] for k in IDX_FILES if k not in found]
        searched.append(f"{directory} (missing {', '.join(missing)})")
    raise DatasetError(
        f"dataset {name!r} needs the IDX files {expected} (each plain or .gz); searched "
        f"{'; '.join(searched)}. {pointing_hint()}"
    )


def load_idx_dataset(name: str, root: Path | None, selection: Selection) -> Dataset:
    """Load ``mnist`` / ``fmnist`` / ``kmnist`` from IDX files under ``root`` (see the module docstring)."""
    files = find_idx_files(name, root)
    try:
        x_train = read_idx(files["train_images"], 3)
        y_train = read_idx(files["train_labels"], 1)
        x_test = read_idx(files["test_images"], 3)
        y_test = read_idx(files["test_labels"], 1)
        for side, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if x.shape[0] != y.shape[0]:
                raise DatasetError(f"{side} images count ({x.shape[0]}) differs from labels ({y.shape[0]})")
            if y.size and int(y.max()) >= N_CLASSES:
                raise DatasetError(f"{side} labels must lie in 0..{N_CLASSES - 1}, found {int(y.max())}")
        if x_train.shape[1:] != x_test.shape[1:] or 0 in x_train.shape[1:]:
            raise DatasetError(f"train images are {x_train.shape[1:]} pixels but test images {x_test.shape[1:]}")
    except DatasetError as exc:
        raise DatasetError(
            f"dataset {name!r}: {exc}. Expected the IDX files {', '.join(IDX_FILES.values())} (each plain "
            f"or .gz) in {files['train_images'].parent}. {pointing_hint()}"
        ) from exc
    h, w = x_train.shape[1:]
    return select_arrays(
        name,
        (h, w),
        N_CLASSES,
        selection,
        (x_train.reshape(len(x_train), h * w), y_train.astype(np.int64)),
        (x_test.reshape(len(x_test), h * w), y_test.astype(np.int64)),
        255.0,
    )
