"""Event-driven synapses (sqsnn.synapses): the same currents and gradients as the dense product."""

from __future__ import annotations

import pytest
import torch

from sqsnn import synapses

DTYPES = [torch.float64, torch.float32]


def spikes(shape: tuple[int, ...], density: float, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) < density).to(dtype)


def both_paths(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, g_out: torch.Tensor
) -> list[list[torch.Tensor]]:
    """(z, dW, db, dx) from the event-driven path (forced) and from the dense path."""
    results = []
    for density in (1.0, 0.0):
        leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, weight, bias)]
        z = synapses.linear(leaves[0], leaves[1], leaves[2], event_density=density)  # type: ignore[arg-type]
        z.backward(g_out)
        out = [z.detach()]
        out += [leaf.grad for leaf in (leaves[1], leaves[2], leaves[0]) if leaf is not None]  # type: ignore[misc]
        results.append(out)
    return results


@pytest.mark.parametrize("dtype", DTYPES)
def test_event_driven_product_equals_dense_bit_for_bit_when_sums_are_exact(dtype: torch.dtype) -> None:
    """Weights, biases and gradients on a 1/64 grid with small sums: every partial sum is exact in either
    order of summation, so the two paths must agree exactly (a wrong index or a missed row would not)."""
    g = torch.Generator().manual_seed(0)
    x = spikes((3, 5, 130), 0.15, 1, dtype)
    x[0, 0] = 0  # a row without events
    x[1, 2] = 1  # a row with all inputs active
    weight = (torch.randint(-64, 65, (70, 130), generator=g) / 64).to(dtype)  # 70: a partial block of outputs
    bias = (torch.randint(-64, 65, (70,), generator=g) / 64).to(dtype)
    g_out = (torch.randint(-64, 65, (3, 5, 70), generator=g) / 64).to(dtype)
    event, dense = both_paths(x, weight, bias, g_out)
    for got, want in zip(event, dense, strict=True):
        assert got.dtype == dtype
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_event_driven_product_matches_dense_to_rounding_with_real_weights(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    x = spikes((4, 6, 300), 0.1, 2, dtype) * torch.randint(1, 3, (4, 6, 300), generator=g).to(dtype)  # counts 1-2
    weight = torch.randn(150, 300, generator=g, dtype=torch.float64).to(dtype)
    g_out = torch.randn(4, 6, 150, generator=g, dtype=torch.float64).to(dtype)
    event, dense = both_paths(x, weight, None, g_out)
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    for got, want in zip(event, dense, strict=True):
        assert torch.allclose(got, want, rtol=tol, atol=tol)


def test_the_event_path_runs_only_below_the_density_threshold() -> None:
    """Above the threshold the dense product runs (its result has torch's addmm/mm backward)."""
    weight = torch.randn(8, 40, dtype=torch.float64, requires_grad=True)
    sparse = spikes((2, 3, 40), 0.1, 3, torch.float64)
    dense = spikes((2, 3, 40), 0.9, 4, torch.float64)
    assert "EventLinear" in type(synapses.linear(sparse, weight, event_density=0.5).grad_fn).__name__
    assert "EventLinear" not in type(synapses.linear(dense, weight, event_density=0.5).grad_fn).__name__
    assert "EventLinear" not in type(synapses.linear(sparse, weight, event_density=0.0).grad_fn).__name__


def test_the_probe_sends_clearly_dense_inputs_to_blas_and_the_exact_count_decides_the_rest() -> None:
    """Every PROBE_STRIDE-th row is looked at first; the exact count still has the last word."""
    weight = torch.randn(8, 40, dtype=torch.float64, requires_grad=True)
    rows = 4 * synapses.PROBE_STRIDE
    probed = torch.arange(rows) % synapses.PROBE_STRIDE == 0
    hidden_dense = torch.zeros(rows, 40, dtype=torch.float64)
    hidden_dense[~probed, :30] = 1.0  # probed rows empty, overall density 0.70
    assert "EventLinear" not in type(synapses.linear(hidden_dense, weight, event_density=0.5).grad_fn).__name__
    probe_dense = torch.zeros(rows, 40, dtype=torch.float64)
    probe_dense[probed] = 1.0  # probed rows full, overall density 1/16
    assert "EventLinear" not in type(synapses.linear(probe_dense, weight, event_density=0.5).grad_fn).__name__
    assert "EventLinear" in type(synapses.linear(probe_dense, weight, event_density=1.0).grad_fn).__name__
