"""Encoders: Bernoulli rate coding (binomial bounds, independence, reproducibility) and event frames."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binom

from sqsnn.encoders import encode, frames_encode, rate_encode

ALPHA = 1e-6  # family-wise false-alarm rate of each statistical test


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binomial_interval(n: int, p: torch.Tensor, tests: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-sided Bonferroni-corrected acceptance interval for Binomial(n, p) counts."""
    a = ALPHA / (2 * tests)
    lo = torch.as_tensor(binom.ppf(a, n, p.numpy()), dtype=torch.float64)
    hi = torch.as_tensor(binom.isf(a, n, p.numpy()), dtype=torch.float64)
    return lo, hi


def test_rate_encode_shape_dtype_and_binary_values() -> None:
    x = torch.rand(3, 7, dtype=torch.float64, generator=gen(1))
    s = rate_encode(x, 4, 0.5, gen(0))
    assert s.shape == (4, 3, 7)
    assert s.dtype == torch.float64
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert rate_encode(x.float(), 2, 0.5, gen(0)).dtype == torch.float32


def test_rate_encode_per_pixel_counts_follow_binomial_min_x_pmax() -> None:
    x = torch.tensor([[0.0, 0.05, 0.2, 0.45, 0.5, 0.7, 1.0], [0.3, 0.6, 0.0, 0.1, 0.99, 0.25, 0.5]])
    x = x.double()
    T, p_max = 20_000, 0.5
    counts = rate_encode(x, T, p_max, gen(123)).sum(dim=0)
    p = x.clamp(max=p_max)
    lo, hi = binomial_interval(T, p, x.numel())
    assert torch.all(counts >= lo) and torch.all(counts <= hi), (counts, lo, hi)
    assert torch.all(counts[x == 0] == 0)  # probability 0 never spikes


def test_rate_encode_p_max_one_and_intensity_one_always_spikes() -> None:
    x = torch.ones(2, 3, dtype=torch.float64)
    assert torch.all(rate_encode(x, 50, 1.0, gen(0)) == 1.0)


def test_rate_encode_steps_are_independent() -> None:
    # Disjoint pairs of consecutive steps of one pixel: both spike with probability p^2 if independent.
    T, p = 40_000, 0.5
    s = rate_encode(torch.full((1, 1), p, dtype=torch.float64), T, 0.5, gen(7))[:, 0, 0]
    both = (s[0::2] * s[1::2]).sum().reshape(1, 1)
    lo, hi = binomial_interval(T // 2, torch.tensor([[p * p]]), 1)
    assert lo.item() <= both.item() <= hi.item()


def test_rate_encode_is_reproducible_with_the_generator() -> None:
    x = torch.rand(5, 9, dtype=torch.float64, generator=gen(3))
    a, b = rate_encode(x, 6, 0.5, gen(42)), rate_encode(x, 6, 0.5, gen(42))
    assert torch.equal(a, b)
    g = gen(42)
    first, second = rate_encode(x, 6, 0.5, g), rate_encode(x, 6, 0.5, g)
    assert torch.equal(first, a) and not torch.equal(first, second)
    assert not torch.equal(a, rate_encode(x, 6, 0.5, gen(43)))


@pytest.mark.parametrize(
    ("x", "T", "p_max", "match"),
    [
        (torch.rand(4, dtype=torch.float64), 3, 0.5, r"shape \(B, D\)"),
        (torch.rand(2, 3, 4, dtype=torch.float64), 3, 0.5, r"shape \(B, D\)"),
        (torch.ones(2, 3, dtype=torch.int64), 3, 0.5, "floating-point"),
        (torch.full((2, 3), 1.5, dtype=torch.float64), 3, 0.5, r"in \[0, 1\]"),
        (torch.full((2, 3), -0.1, dtype=torch.float64), 3, 0.5, r"in \[0, 1\]"),
        (torch.full((2, 3), float("nan"), dtype=torch.float64), 3, 0.5, r"in \[0, 1\]"),
        (torch.rand(2, 3, dtype=torch.float64), 0, 0.5, "positive integer"),
        (torch.rand(2, 3, dtype=torch.float64), 2.0, 0.5, "positive integer"),
        (torch.rand(2, 3, dtype=torch.float64), 3, 0.0, r"p_max must lie in \(0, 1\]"),
        (torch.rand(2, 3, dtype=torch.float64), 3, 1.01, r"p_max must lie in \(0, 1\]"),
        (torch.rand(2, 3, dtype=torch.float64), 3, float("nan"), r"p_max must lie in \(0, 1\]"),
    ],
)
def test_rate_encode_rejects_bad_input(x: torch.Tensor, T: int, p_max: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rate_encode(x, T, p_max, gen(0))


def test_frames_encode_is_time_major_and_clips_counts() -> None:
    frames = torch.tensor([[[0, 3], [1, 0], [2, 5]], [[0, 0], [0, 1], [4, 0]]])  # (B=2, T=3, D=2) counts
    s = frames_encode(frames)
    assert s.shape == (3, 2, 2) and s.dtype == torch.float64
    expected = torch.tensor(
        [[[0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 0.0]]], dtype=torch.float64
    )
    assert torch.equal(s, expected)
    assert torch.equal(frames_encode(frames.bool()), expected)
    assert frames_encode(frames.float()).dtype == torch.float32


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (torch.zeros(2, 3), r"shape \(B, T, D\)"),
        (-torch.ones(1, 2, 3), "non-negative"),
        (torch.full((1, 2, 3), float("inf")), "finite"),
    ],
)
def test_frames_encode_rejects_bad_input(frames: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        frames_encode(frames)


def test_encode_dispatches_on_kind() -> None:
    x = torch.rand(3, 4, dtype=torch.float64, generator=gen(5))
    assert torch.equal(encode(x, "static", 5, 0.5, gen(9)), rate_encode(x, 5, 0.5, gen(9)))
    frames = (torch.rand(3, 5, 4, generator=gen(6)) > 0.5).double()
    assert torch.equal(encode(frames, "frames", 5, 0.5, gen(9)), frames.permute(1, 0, 2))


def test_encode_rejects_unknown_kind_and_frame_length_mismatch() -> None:
    with pytest.raises(ValueError, match="unknown input kind 'video'"):
        encode(torch.zeros(1, 1), "video", 5, 0.5, gen(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frames hold 20 time bins per sample but T=5"):
        encode(torch.zeros(2, 20, 3), "frames", 5, 0.5, gen(0))
