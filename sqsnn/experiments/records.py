"""The CSV files an experiment writes (all under its results directory) and how to read and append them.

* ``cells.csv`` — one row per finished cell (``CELL_COLUMNS``); a cell listed here is never run again.
* ``epochs.csv`` — per-epoch metrics of every finished cell (``EPOCH_COLUMNS``).
* ``neurons.csv`` — each neuron's spike rate (spikes per step) on the test set (``NEURON_COLUMNS``).
* ``raster.csv`` — the spikes of test sample 0, one row per spike (``RASTER_COLUMNS``).

Lists (layer sizes, per-layer spike rates) are stored as ``;``-separated numbers. An empty accuracy
means "not evaluated": a cell's ``val_accuracy`` without a validation split, an epoch's ``test_accuracy``
when the validation split was evaluated instead (the test split is evaluated once per finished cell).
A file written before a column existed gets it (empty in the old rows) on the next append.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

CELLS, EPOCHS, NEURONS, RASTER = "cells.csv", "epochs.csv", "neurons.csv", "raster.csv"
CELL_COLUMNS = [
    "key",
    "config",
    "label",
    "kind",
    "mode",
    "method",
    "estimator",
    "dataset",
    "seed",
    "sizes",
    "direct",
    "num_parameters",
    "epochs",
    "best_epoch",
    "val_accuracy",
    "test_accuracy",
    "spike_rates",
    "seconds",
    "status",
    "command",
]
EPOCH_COLUMNS = [
    "key",
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "spike_rates",
    "seconds",
]
NEURON_COLUMNS = ["key", "layer", "neuron", "rate"]
RASTER_COLUMNS = ["key", "layer", "step", "neuron"]


def join_numbers(values: Iterable[float | int]) -> str:
    """``[1, 2.5] -> "1;2.5"``."""
    return ";".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values)


def split_numbers(text: str) -> list[float]:
    """Inverse of :func:`join_numbers` (empty string: empty list)."""
    return [float(v) for v in text.split(";")] if text else []


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV file as dicts (empty list when the file does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def append_rows(path: Path, columns: Sequence[str], rows: Iterable[dict[str, object]]) -> None:
    """Append rows (writing the header first if the file is new).

    A file whose header differs from ``columns`` is first rewritten with ``columns`` (its rows keep their
    values; columns it lacked are left empty) so that every row sits under the right header.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if header != list(columns):
            old = read_rows(path)
            with path.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(columns), restval="", extrasaction="ignore")
                writer.writeheader()
                writer.writerows(old)
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerows(rows)
