r"""``temporal-order``: a synthetic event task whose class is the order in which symbols appear in time.

Each sample is ``T`` frames of ``symbols x channels`` binary channels (``image_shape = (symbols, channels)``,
row ``k`` being symbol ``k``'s channel group). Every symbol is shown exactly once, at its own time step: the
steps are ``symbols`` distinct steps drawn uniformly from ``0..T-1`` and sorted, and the symbols are shown at
them in the order of the sample's permutation. At a symbol's step each channel of its group fires with
probability ``p_on``; every channel also fires with probability ``p_noise`` at every step (background).
The label is the index of the permutation in ``itertools.permutations(range(symbols))`` order, so there are
``symbols!`` classes (6 for the default 3 symbols).

Why the task needs memory: the set of frames a sample shows (one frame per symbol plus background frames)
has the same distribution for every class; only their order differs. A network whose state is reset every
step (the SQSNN ``memoryless`` mode) produces per-step outputs that depend on the current frame only, so
its output spike counts (and mean probabilities) over the ``T`` steps have the same distribution for every
class: it sits at chance, ``1 / symbols!``. Any accuracy above chance has to come from state carried across
steps (quantum memory, the reference's last-spike memory, a LIF membrane).

The samples are generated from ``numpy.random.default_rng(seed)`` (train side first, then test), so a given
set of options always yields the same dataset; nothing is read from disk.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sqsnn.datasets.base import Dataset, DatasetError, IntArray, Selection, to_dataset

NAME = "temporal-order"


def order_classes(symbols: int) -> list[tuple[int, ...]]:
    """The permutations of ``range(symbols)`` in label order (label ``i`` is the ``i``-th)."""
    return list(itertools.permutations(range(symbols)))


def generate_order_samples(
    n: int,
    rng: np.random.Generator,
    *,
    T: int,
    symbols: int,
    channels: int,
    p_on: float,
    p_noise: float,
) -> tuple[npt.NDArray[np.float64], IntArray]:
    """``n`` samples: frames ``(n, T, symbols * channels)`` of 0/1 values and labels ``(n,)``.

    Labels are drawn uniformly from the ``symbols!`` orders; see the module docstring for the frames.
    """
    orders = np.asarray(order_classes(symbols), dtype=np.int64)  # (classes, symbols)
    labels = rng.integers(0, len(orders), size=n)
    # distinct sorted steps per sample: the first `symbols` entries of a random permutation of 0..T-1
    steps = np.sort(np.argsort(rng.random((n, T)), axis=1)[:, :symbols], axis=1)  # (n, symbols)
    frames = (rng.random((n, T, symbols, channels)) < p_noise).astype(np.float64)
    shown = orders[labels]  # (n, symbols): the symbol shown at the k-th sorted step
    on = rng.random((n, symbols, channels)) < p_on
    rows = np.arange(n)[:, None]
    frames[rows, steps, shown] = np.maximum(frames[rows, steps, shown], on)
    return frames.reshape(n, T, symbols * channels), labels.astype(np.int64)


def load_temporal_order(
    data_dir: Path | None,
    selection: Selection,
    *,
    T: int = 10,
    symbols: int = 3,
    channels: int = 8,
    n_train: int = 3000,
    n_test: int = 1000,
    p_on: float = 0.8,
    p_noise: float = 0.02,
    seed: int = 0,
) -> Dataset:
    """The temporal-order task (``data_dir`` is not used); see the module docstring.

    Args:
        T: time steps per sample (>= ``symbols``).
        symbols: symbols per sample (2..5); the task has ``symbols!`` classes.
        channels: channels per symbol group.
        n_train, n_test: samples per side.
        p_on: firing probability of a shown symbol's channels at its step, in (0, 1].
        p_noise: background firing probability of every channel at every step, in [0, 1).
        seed: generator seed.

    Raises:
        DatasetError: an option out of range (the message names it).
    """
    for name, value, low in (("T", T, symbols), ("channels", channels, 1), ("n_train", n_train, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DatasetError(f"{NAME}: {name} must be an integer >= {low}, got {value!r}")
    if isinstance(symbols, bool) or not isinstance(symbols, int) or not 2 <= symbols <= 5:
        raise DatasetError(f"{NAME}: symbols must be an integer in 2..5, got {symbols!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise DatasetError(f"{NAME}: n_test must be an integer >= 1, got {n_test!r}")
    if not 0 < p_on <= 1:
        raise DatasetError(f"{NAME}: p_on must lie in (0, 1], got {p_on!r}")
    if not 0 <= p_noise < 1:
        raise DatasetError(f"{NAME}: p_noise must lie in [0, 1), got {p_noise!r}")
    rng = np.random.default_rng(seed)
    train, test = (
        generate_order_samples(n, rng, T=T, symbols=symbols, channels=channels, p_on=p_on, p_noise=p_noise)
        for n in (n_train, n_test)
    )
    n_classes = math.factorial(symbols)
    sides = []
    for (x, y), limit, side in ((train, selection.limit_train, "train"), (test, selection.limit_test, "test")):
        picked, labels = selection.apply(y, n_classes, limit, side)
        sides.append((x[picked], labels))
    return to_dataset(NAME, "frames", (symbols, channels), selection.n_classes(n_classes), sides[0], sides[1])
