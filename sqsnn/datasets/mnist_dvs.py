"""MNIST-DVS: MNIST digits shown on a screen and recorded by a DVS128 event camera.

Source files: the original jAER AEDAT 2.0 recordings (``*.aedat``, see :mod:`sqsnn.datasets.aedat`),
searched recursively under ``<data dir>/mnist-dvs`` if that directory exists, else under ``<data dir>``.
The label is the digit in the file name ``mnist_<digit>_scale<NN>_<NNNN>.aedat``, or else the nearest
parent directory named by a single digit (``.../<digit>/...``). The display scale (4, 8 or 16 in the
original set) comes from the file name or a parent directory ``scale<NN>``; ``scales=[4]`` keeps one.

Frames (the reference setup is 26x26 pixels, 25 ms bins, T = 20, i.e. the first 500 ms):

* time: bin ``k`` (0-based) holds the events with ``k * bin_ms <= t - t_first < (k + 1) * bin_ms``, where
  ``t_first`` is the recording's earliest timestamp; events after ``T`` bins are dropped;
* space: a centred ``crop x crop`` window of the 128x128 sensor (default 104, i.e. rows/columns 12..115,
  which holds the digit at every display scale) is sum-pooled by ``crop / resolution`` (default 4) in each
  direction, giving ``resolution x resolution`` pixels. ``crop=26`` instead keeps the central 26x26 sensor
  pixels at full resolution;
* polarity: ON and OFF events are merged by default (``polarity="on"`` / ``"off"`` keeps one);
* value: 1 if the pooled pixel saw at least one event in the bin, else 0. Pixel ``d = row * resolution +
  col`` with row from the sensor's ``y`` address and column from its ``x`` address.

Split: a seeded stratified (by digit) split of the recordings found, ``test_fraction`` of them to test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from sqsnn.datasets.aedat import SENSOR_SIZE, Events, read_aedat2
from sqsnn.datasets.base import (
    Dataset,
    DatasetError,
    IntArray,
    Selection,
    candidate_dirs,
    pointing_hint,
    stratified_split,
    to_dataset,
)

NAME = "mnist-dvs"
N_CLASSES = 10
FILE_NAME = re.compile(r"^mnist_(\d)_scale(\d+)_\d+\.aedat$", re.IGNORECASE)
SCALE_DIR = re.compile(r"^scale(\d+)$", re.IGNORECASE)
Polarity = Literal["both", "on", "off"]


@dataclass(frozen=True)
class Recording:
    """One ``.aedat`` file with the label (digit) and display scale read from its path."""

    path: Path
    label: int
    scale: int | None


def describe_recording(path: Path, base: Path) -> Recording:
    """Label and scale of ``path`` (below ``base``) from its file name or parent directories."""
    match = FILE_NAME.match(path.name)
    parents = [p.name for p in path.relative_to(base).parents if p.name]
    if match:
        return Recording(path, int(match.group(1)), int(match.group(2)))
    digits = [int(name) for name in parents if len(name) == 1 and name.isdigit()]
    if not digits:
        raise DatasetError(
            f"cannot tell the digit of {path}: name it mnist_<digit>_scale<NN>_<NNNN>.aedat or put it in a "
            f"directory named by the digit (.../<digit>/...)"
        )
    scales = [int(m.group(1)) for m in map(SCALE_DIR.match, parents) if m]
    return Recording(path, digits[0], scales[0] if scales else None)


def find_recordings(root: Path | None, scales: Sequence[int] | None) -> list[Recording]:
    """Every recording under the first of ``<root>/mnist-dvs``, ``<root>`` holding ``*.aedat`` files,
    sorted by path and filtered to ``scales`` when given.

    Raises:
        DatasetError: no data directory, no recordings, unlabelled files, or no file of the chosen scales.
    """
    if root is None:
        raise DatasetError(
            f"dataset {NAME!r} needs the MNIST-DVS recordings (*.aedat, e.g. mnist_0_scale04_0001.aedat) "
            f"and no data directory was given. {pointing_hint()}"
        )
    searched = candidate_dirs(root, NAME)
    for base in searched:
        paths = sorted(p for p in base.rglob("*") if p.suffix.lower() == ".aedat" and p.is_file())
        if paths:
            break
    else:
        raise DatasetError(
            f"dataset {NAME!r} needs the MNIST-DVS recordings (*.aedat, e.g. mnist_0_scale04_0001.aedat); "
            f"none found (recursively) in {' or '.join(map(str, searched))}. {pointing_hint()}"
        )
    recordings = [describe_recording(p, base) for p in paths]
    if scales is None:
        return recordings
    wanted = set(scales)
    unknown = [r.path for r in recordings if r.scale is None]
    if unknown:
        raise DatasetError(f"scales={list(scales)} given but the scale of {unknown[0]} is unknown")
    kept = [r for r in recordings if r.scale in wanted]
    if not kept:
        found = sorted({r.scale for r in recordings if r.scale is not None})
        raise DatasetError(f"no recording of scales {sorted(wanted)} under {base}; scales found: {found}")
    return kept


def bin_events(
    events: Events, *, T: int, bin_ms: float, crop: int, resolution: int, polarity: Polarity = "both"
) -> npt.NDArray[np.int64]:
    """Event counts per time bin and pooled pixel, ``(T, resolution * resolution)`` (see module docstring)."""
    keep = np.ones(len(events.x), dtype=bool)
    if polarity != "both":
        keep &= events.polarity == (1 if polarity == "on" else 0)
    offset = (SENSOR_SIZE - crop) // 2
    col, row = events.x - offset, events.y - offset
    keep &= (col >= 0) & (col < crop) & (row >= 0) & (row < crop)
    counts = np.zeros(T * resolution * resolution, dtype=np.int64)
    if not keep.any():
        return counts.reshape(T, resolution * resolution)
    t = events.timestamp_us - events.timestamp_us.min()
    step = np.floor(t / (bin_ms * 1000.0)).astype(np.int64)
    keep &= step < T
    factor = crop // resolution
    pixel = (row // factor) * resolution + col // factor
    flat = step[keep] * (resolution * resolution) + pixel[keep]
    counts += np.bincount(flat, minlength=counts.size)
    return counts.reshape(T, resolution * resolution)


def _check_options(T: int, bin_ms: float, crop: int, resolution: int, test_fraction: float, polarity: str) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise DatasetError(f"T must be a positive integer number of time bins, got {T!r}")
    if not bin_ms > 0:
        raise DatasetError(f"bin_ms must be positive, got {bin_ms!r}")
    if not (isinstance(resolution, int) and isinstance(crop, int) and 1 <= resolution <= crop <= SENSOR_SIZE):
        raise DatasetError(
            f"need integers 1 <= resolution <= crop <= {SENSOR_SIZE}, got resolution={resolution!r}, crop={crop!r}"
        )
    if crop % resolution:
        raise DatasetError(f"crop ({crop}) must be a multiple of resolution ({resolution}) to pool evenly")
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    if polarity not in ("both", "on", "off"):
        raise DatasetError(f"polarity must be 'both', 'on' or 'off', got {polarity!r}")


def load_mnist_dvs(
    root: Path | None,
    selection: Selection,
    *,
    T: int = 20,
    bin_ms: float = 25.0,
    resolution: int = 26,
    crop: int = 104,
    test_fraction: float = 0.2,
    seed: int = 0,
    scales: Sequence[int] | None = None,
    polarity: Polarity = "both",
) -> Dataset:
    """Load MNIST-DVS as ``(N, T, resolution**2)`` 0/1 frames (see the module docstring for every option).

    Only the recordings kept after the split, ``classes`` and limits are read from disk.
    """
    _check_options(T, bin_ms, crop, resolution, test_fraction, polarity)
    recordings = find_recordings(root, scales)
    labels: IntArray = np.array([r.label for r in recordings], dtype=np.int64)
    try:
        train, test = stratified_split(labels, test_fraction, seed)
    except ValueError as exc:
        raise DatasetError(f"cannot split the {len(recordings)} MNIST-DVS recordings found: {exc}") from exc
    sides = []
    for side, index, limit in (("train", train, selection.limit_train), ("test", test, selection.limit_test)):
        picked, y = selection.apply(labels[index], N_CLASSES, limit, side)
        frames = np.zeros((len(picked), T, resolution * resolution), dtype=np.float64)
        for i, k in enumerate(index[picked]):
            try:
                events = read_aedat2(recordings[k].path)
            except DatasetError as exc:
                raise DatasetError(f"dataset {NAME!r}: {exc}. {pointing_hint()}") from exc
            frames[i] = bin_events(events, T=T, bin_ms=bin_ms, crop=crop, resolution=resolution, polarity=polarity) > 0
        sides.append((frames, y))
    return to_dataset(NAME, "frames", (resolution, resolution), selection.n_classes(N_CLASSES), sides[0], sides[1])
