"""The single-shot uniforms: Philox4x32-10 against its published known-answer vectors, exact values on
the float grids, one call equal to step-by-step calls, and uniformity by chi-square tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from sqsnn import kernels

# Random123's known-answer vectors for philox4x32 with 10 rounds: (counter, key, result).
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KNOWN_ANSWERS)
def test_philox_matches_the_published_known_answers(
    counter: tuple[int, ...], key: tuple[int, int], expected: tuple[int, ...]
) -> None:
    words = kernels.philox_words(np.uint64(key[0] | key[1] << 32), np.array([counter], dtype=np.uint64))
    assert tuple(int(w) for w in words[0]) == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniforms_are_the_philox_words_on_the_float_grid(dtype: torch.dtype) -> None:
    """Every value is the documented function of its block's words, so the layout is what the docstring
    says: step t, chunk c, plane k, index j hold block c L + j of key t."""
    g = torch.Generator().manual_seed(11)
    shape = (3, 7, 13)  # 273 values per step: a partial last chunk
    u = kernels.draw_uniforms((2, *shape), g, dtype)
    assert u.shape == (2, *shape) and u.dtype == dtype
    keys = torch.randint(0, 2**63 - 1, (2,), generator=torch.Generator().manual_seed(11)).numpy().view(np.uint64)
    planes = 4 if dtype == torch.float32 else 2
    length = -(-273 // (planes * kernels.UNIFORM_CHUNKS))
    flat = u.reshape(2, -1).numpy()
    for t in range(2):
        for position in (0, 1, length, 2 * length + 3, 272):
            c, rest = divmod(position, planes * length)
            k, j = divmod(rest, length)
            counter = np.array([[c * length + j, 0, 0, 0]], dtype=np.uint64)
            w = [int(x) for x in kernels.philox_words(keys[t], counter)[0]]
            if dtype == torch.float32:
                expected = (w[k] >> 8) / 2**24
            else:
                expected = (((w[2 * k] << 32) | w[2 * k + 1]) >> 11) / 2**53
            assert flat[t, position] == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_call_equals_step_by_step_calls(dtype: torch.dtype) -> None:
    whole = kernels.draw_uniforms((4, 9, 31), torch.Generator().manual_seed(5), dtype)
    g = torch.Generator().manual_seed(5)
    steps = torch.cat([kernels.draw_uniforms((1, 9, 31), g, dtype) for _ in range(4)])
    assert torch.equal(whole, steps)
    assert not torch.equal(whole[0], whole[1])  # a fresh key per step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniforms_are_uniform_and_independent(dtype: torch.dtype) -> None:
    """Chi-square tests at level 1e-4 each: 64 equal bins of all values; 8 x 8 bins of pairs of
    neighbouring values (within a row) and of the same position in consecutive steps."""
    u = kernels.draw_uniforms((4, 256, 1000), torch.Generator().manual_seed(2), dtype).numpy().astype(np.float64)
    counts = np.bincount((u * 64).astype(np.int64).ravel(), minlength=64)
    assert stats.chisquare(counts).pvalue > 1e-4
    for a, b in ((u[:, :, :-1:2], u[:, :, 1::2]), (u[:-1], u[1:])):
        cells = (a * 8).astype(np.int64) * 8 + (b * 8).astype(np.int64)
        assert stats.chisquare(np.bincount(cells.ravel(), minlength=64)).pvalue > 1e-4
    assert u.min() >= 0.0 and u.max() < 1.0
