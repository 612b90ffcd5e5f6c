"""The temporal-order task: shapes, labels equal to the order of the symbols, class-independent frame
contents (only the order carries the label), and what that means for a memoryless SQSNN."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from sqsnn.datasets import DatasetError, list_datasets, load_dataset
from sqsnn.datasets.temporal import order_classes
from sqsnn.network import NetworkConfig, SQSNetwork


def test_shapes_split_and_registry_entry() -> None:
    data = load_dataset("temporal-order", n_train=300, n_test=120, val_fraction=0.1)
    assert data.kind == "frames" and data.image_shape == (3, 8) and data.n_classes == 6
    assert data.x_train.shape == (270, 10, 24) and data.x_val is not None and data.x_val.shape == (30, 10, 24)
    assert data.x_test.shape == (120, 10, 24)
    assert set(torch.unique(data.x_train).tolist()) <= {0.0, 1.0}
    again = load_dataset("temporal-order", n_train=300, n_test=120, val_fraction=0.1)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)
    other = load_dataset("temporal-order", n_train=300, n_test=120, seed=1)
    assert not torch.equal(other.x_test, data.x_test)
    info = {i.name: i for i in list_datasets()}["temporal-order"]
    assert (info.kind, info.image_shape, info.steps, info.n_classes) == ("frames", (3, 8), 10, 6)
    assert "symbols" in info.options
    two = load_dataset("temporal-order", symbols=2, T=4, channels=5, n_train=50, n_test=20, val_fraction=0)
    assert two.n_classes == 2 and two.x_train.shape == (50, 4, 10)
    picked = load_dataset("temporal-order", n_train=300, n_test=120, classes=[0, 5], val_fraction=0)
    assert picked.n_classes == 2 and set(picked.y_train.tolist()) == {0, 1}


def test_label_is_the_order_in_which_the_symbols_appear() -> None:
    data = load_dataset("temporal-order", n_train=200, n_test=10, p_on=1.0, p_noise=0.0, val_fraction=0)
    frames = data.x_train.reshape(200, 10, 3, 8)
    orders = order_classes(3)
    for x, y in zip(frames, data.y_train, strict=True):
        active = x.sum(dim=-1) > 0  # (T, symbols)
        assert active.sum(dim=0).tolist() == [1, 1, 1], "every symbol is shown at exactly one step"
        assert int(active.any(dim=1).sum()) == 3, "at three distinct steps"
        first = active.float().argmax(dim=0)  # step of each symbol
        assert tuple(torch.argsort(first).tolist()) == orders[int(y)]
        assert torch.all(x.sum(dim=-1)[active] == 8), "p_on = 1 lights the whole group"


def test_frame_contents_do_not_depend_on_the_class() -> None:
    """Chi-square test of independence between the label and each symbol group's total spike count: the
    counts (summed over time) are identically distributed in every class, only the order differs."""
    data = load_dataset("temporal-order", n_train=6000, n_test=10, val_fraction=0)
    counts = data.x_train.reshape(6000, 10, 3, 8).sum(dim=(1, 3)).numpy()  # (N, symbols)
    labels = data.y_train.numpy()
    for group in range(3):
        bins = np.minimum(counts[:, group], 10).astype(int)  # pool the sparse tail
        table = np.array([[np.sum((labels == c) & (bins == b)) for b in np.unique(bins)] for c in range(6)])
        table = table[:, table.min(axis=0) >= 5]
        assert chi2_contingency(table).pvalue > 1e-3
    shares = np.bincount(labels, minlength=6) / len(labels)
    assert np.all(np.abs(shares - 1 / 6) < 4 * math.sqrt(1 / 6 * 5 / 6 / len(labels)))


def test_memoryless_network_cannot_see_the_order_but_quantum_memory_can() -> None:
    """A one-layer memoryless SQSNN's per-step probabilities follow the frames: permuting the time steps
    permutes them, so its mean output probability (its class score) is the same for every order."""
    data = load_dataset("temporal-order", n_train=40, n_test=10, val_fraction=0)
    x = data.x_train[:8].transpose(0, 1)  # (T, B, D)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    scores = {}
    for mode in ("memoryless", "quantum"):
        net = SQSNetwork(NetworkConfig(sizes=[24, 6], mode=mode, seed=0))
        net.train(False)
        with torch.no_grad():
            probs = net(x, torch.Generator().manual_seed(1)).probs[-1]
            shuffled = net(x[perm], torch.Generator().manual_seed(1)).probs[-1]
        scores[mode] = (probs.mean(dim=0), shuffled.mean(dim=0))
        if mode == "memoryless":
            torch.testing.assert_close(shuffled, probs[perm])
    torch.testing.assert_close(*scores["memoryless"])
    assert not torch.allclose(*scores["quantum"], atol=1e-3)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"symbols": 1}, "symbols"),
        ({"symbols": 6}, "symbols"),
        ({"T": 2}, "T"),
        ({"channels": 0}, "channels"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": 0}, "n_test"),
        ({"p_on": 0.0}, "p_on"),
        ({"p_noise": 1.0}, "p_noise"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], name: str) -> None:
    with pytest.raises(DatasetError, match=name):
        load_dataset("temporal-order", **options)
