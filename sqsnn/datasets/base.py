"""The :class:`Dataset` container, :class:`DatasetError`, and the split / subset rules every loader shares.

Order of operations for every dataset (so that subsets are always subsets of the full split):

1. the dataset's fixed train/test split (its own file split, or a seeded stratified split);
2. ``classes``: keep those labels, relabelled ``0..k-1`` in the order given;
3. ``limit_train`` / ``limit_test``: a seeded (seed 0) stratified subset of each side;
4. ``val_fraction``: a seeded (``val_seed``) stratified part of what is left of the training side is held
   out as the validation split (:func:`hold_out_validation`); the test side is never touched.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from sqsnn.encoders import DATA_KINDS, DataKind

DATA_DIR_ENV = "SQSNN_DATA_DIR"
SUBSET_SEED = 0
VAL_FRACTION = 0.1  # the default validation share of the training split, for every dataset

IntArray = npt.NDArray[np.int64]


class DatasetError(ValueError):
    """A dataset cannot be loaded: files missing or corrupt, or an invalid option."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test split, ready for encoding.

    Attributes:
        name: registry name (``"digits"``, ``"mnist"``, ...).
        x_train: float64; ``(N, D)`` intensities in [0, 1] when ``kind == "static"``, ``(N, T, D)`` 0/1
            event frames when ``kind == "frames"``. ``D = H * W`` pixels in row-major order.
        y_train: ``(N,)`` int64 labels in ``0..n_classes-1``.
        x_test, y_test: the same for the test side.
        n_classes: number of classes.
        kind: ``"static"`` or ``"frames"``.
        image_shape: ``(H, W)``.
        x_val, y_val: the validation split held out of the training side (same layout as ``x_train``), or
            ``None`` when no validation part was held out.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    kind: DataKind
    image_shape: tuple[int, int]
    x_val: Tensor | None = None
    y_val: Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"Dataset kind must be one of {DATA_KINDS}, got {self.kind!r}")
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("x_val and y_val must be given together (or both left None)")
        ndim = 2 if self.kind == "static" else 3
        h, w = self.image_shape
        sides = [("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)]
        if self.x_val is not None and self.y_val is not None:
            sides.append(("val", self.x_val, self.y_val))
        for side, x, y in sides:
            if x.dim() != ndim or x.shape[-1] != h * w:
                want = "(N, D)" if ndim == 2 else "(N, T, D)"
                raise ValueError(
                    f"x_{side} must have shape {want} with D = {h}*{w} for kind {self.kind!r}, got {tuple(x.shape)}"
                )
            if not x.is_floating_point():
                raise ValueError(f"x_{side} must be floating point, got {x.dtype}")
            if y.dim() != 1 or y.dtype != torch.int64 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y_{side} must be an int64 vector with one label per sample ({x.shape[0]}), "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if y.numel() and (y.min() < 0 or y.max() >= self.n_classes):
                raise ValueError(f"y_{side} labels must lie in 0..{self.n_classes - 1}")

    @property
    def n_features(self) -> int:
        """Input channels per time step, ``D = H * W``."""
        return self.image_shape[0] * self.image_shape[1]


def hold_out_validation(data: Dataset, fraction: float, seed: int) -> Dataset:
    """``data`` with a seeded, stratified ``fraction`` of its training side moved into ``x_val`` / ``y_val``.

    ``fraction`` lies in [0, 1); 0 returns ``data`` unchanged (no validation split). The validation part
    holds ``max(round(fraction * N), classes present)`` samples, stratified on the labels (sklearn
    ``train_test_split``), so every class appears on both sides.

    Raises:
        DatasetError: ``fraction`` out of range, a dataset that already has a validation split, or too few
            training samples to stratify.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
        raise DatasetError(f"val_fraction must lie in [0, 1) (0: no validation split), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DatasetError(f"val_seed must be an integer, got {seed!r}")
    if fraction == 0:
        return data
    if data.x_val is not None:
        raise DatasetError(f"dataset {data.name!r} already has a validation split")
    labels = data.y_train.numpy()
    present = len(np.unique(labels))
    size = max(round(fraction * len(labels)), present)  # at least one of every class
    if size > len(labels) - present:
        raise DatasetError(
            f"cannot hold out val_fraction={fraction} of the {len(labels)} training samples of dataset "
            f"{data.name!r}: a stratified split needs at least one sample of each of its {present} classes on "
            "both sides; use a larger training set or val_fraction=0"
        )
    keep, val = stratified_split(labels, size, seed)
    keep, val = np.sort(keep), np.sort(val)  # the files' order within each side
    return dataclasses.replace(
        data,
        x_train=data.x_train[keep],
        y_train=data.y_train[keep],
        x_val=data.x_train[val],
        y_val=data.y_train[val],
    )


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """``data_dir`` if given, else the ``SQSNN_DATA_DIR`` environment variable, else ``None``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def candidate_dirs(root: Path, name: str, aliases: Sequence[str] = ()) -> list[Path]:
    """Directories searched for a dataset's files: ``<root>/<name>``, ``<root>/<alias>`` for each alias,
    then ``<root>`` itself."""
    return [root / name, *(root / alias for alias in aliases), root]


def pointing_hint() -> str:
    """How a user tells sqsnn where the data lives."""
    return (
        f"Point sqsnn at the directory holding the files with --data-dir DIR (load_dataset(..., "
        f"data_dir=DIR)) or the {DATA_DIR_ENV} environment variable; a subdirectory named like the "
        f"dataset is searched too. Nothing is downloaded."
    )


def stratified_split(y: IntArray, test_size: int | float, seed: int) -> tuple[IntArray, IntArray]:
    """Indices ``(train, test)`` of a seeded stratified split (sklearn ``train_test_split``)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y, random_state=seed)
    return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)


def stratified_subset(labels: IntArray, size: int, seed: int) -> IntArray:
    """Sorted indices of a seeded stratified subset of ``size`` < ``len(labels)`` samples.

    Class ``c`` with ``n_c`` of the ``n`` samples gets ``floor(size * n_c / n)`` places; the places left over
    go one each to the classes with the largest fractional parts (ties: lower label). Within a class the
    samples are taken in the order of one seeded random permutation.
    """
    _, counts = np.unique(labels, return_counts=True)
    quota = size * counts / len(labels)
    take = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - take), kind="stable")[: size - int(take.sum())]
    take[extra] += 1
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, shuffled within
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = np.concatenate([order[start : start + k] for start, k in zip(starts, take, strict=True)])
    return np.sort(keep).astype(np.int64)


@dataclass(frozen=True)
class Selection:
    """The user's ``classes`` / ``limit_train`` / ``limit_test`` choices, validated."""

    classes: tuple[int, ...] | None
    limit_train: int | None
    limit_test: int | None

    @classmethod
    def create(cls, classes: Sequence[int] | None, limit_train: int | None, limit_test: int | None) -> Selection:
        if classes is not None:
            picked = tuple(classes)
            if len(picked) < 2 or any(isinstance(c, bool) or not isinstance(c, int | np.integer) for c in picked):
                raise DatasetError(f"classes must list at least two integer labels, got {classes!r}")
            if len(set(picked)) != len(picked):
                raise DatasetError(f"classes must not repeat a label, got {list(picked)}")
            classes = tuple(int(c) for c in picked)
        for arg, value in (("limit_train", limit_train), ("limit_test", limit_test)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DatasetError(f"{arg} must be a positive integer or None, got {value!r}")
        return cls(classes, limit_train, limit_test)

    def n_classes(self, total: int) -> int:
        """Number of classes after selection, checking that every chosen label exists."""
        if self.classes is None:
            return total
        bad = [c for c in self.classes if not 0 <= c < total]
        if bad:
            raise DatasetError(f"classes {bad} do not exist: labels run from 0 to {total - 1}")
        return len(self.classes)

    def apply(self, y: IntArray, total: int, limit: int | None, side: str) -> tuple[IntArray, IntArray]:
        """Pick samples of one side: returns ``(indices into y, new labels)``.

        ``total`` is the number of classes before selection; ``limit`` this side's limit.
        """
        n_classes = self.n_classes(total)
        index = np.arange(len(y), dtype=np.int64)
        labels = y.astype(np.int64)
        if self.classes is not None:
            relabel = np.full(total, -1, dtype=np.int64)
            relabel[list(self.classes)] = np.arange(n_classes)
            labels = relabel[labels]
            index = index[labels >= 0]
            labels = labels[labels >= 0]
        if limit is not None and limit < len(index):
            keep = stratified_subset(labels, limit, SUBSET_SEED)
            index, labels = index[keep], labels[keep]
        return index, labels


def to_dataset(
    name: str,
    kind: DataKind,
    image_shape: tuple[int, int],
    n_classes: int,
    train: tuple[npt.NDArray[np.number], IntArray],
    test: tuple[npt.NDArray[np.number], IntArray],
) -> Dataset:
    """Wrap numpy arrays (already selected) into a float64 / int64 :class:`Dataset`."""
    return Dataset(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(train[0], dtype=np.float64)),
        y_train=torch.from_numpy(np.ascontiguousarray(train[1], dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(test[0], dtype=np.float64)),
        y_test=torch.from_numpy(np.ascontiguousarray(test[1], dtype=np.int64)),
        n_classes=n_classes,
        kind=kind,
        image_shape=image_shape,
    )


def select_arrays(
    name: str,
    image_shape: tuple[int, int],
    total: int,
    selection: Selection,
    train: tuple[npt.NDArray[np.number], IntArray],
    test: tuple[npt.NDArray[np.number], IntArray],
    divisor: float,
) -> Dataset:
    """Apply ``selection`` to in-memory ``(N, D)`` train/test arrays of a static dataset.

    ``total`` is the number of classes before selection; pixel values are divided by ``divisor`` (after
    selection, so only the kept samples are converted to float64).
    """
    i_train, y_train = selection.apply(train[1], total, selection.limit_train, "train")
    i_test, y_test = selection.apply(test[1], total, selection.limit_test, "test")
    return to_dataset(
        name,
        "static",
        image_shape,
        selection.n_classes(total),
        (train[0][i_train] / divisor, y_train),
        (test[0][i_test] / divisor, y_test),
    )
