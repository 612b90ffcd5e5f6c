"""The fused neuron kernels in float32 against float64, and the recorded trajectory the local rule uses."""

from __future__ import annotations

import math

import pytest
import torch

from sqsnn import kernels
from sqsnn.neuron import (
    MEMORY_MODES,
    MemoryMode,
    SQSParams,
    _kernel_backward,
    _kernel_forward,
    initial_state,
    sqs_layer,
    sqs_layer_trace,
    sqs_step,
)

STEPS, BATCH, N = 5, 64, 40


def layer(seed: int) -> tuple[torch.Tensor, SQSParams, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    angles = SQSParams(*(torch.rand(N, generator=g, dtype=torch.float64) * 2 * math.pi - math.pi for _ in range(3)))
    z = torch.randn(STEPS, BATCH, N, generator=g, dtype=torch.float64) * 0.6 + 0.2
    u = torch.rand(STEPS, BATCH, N, generator=g, dtype=torch.float64)
    return z, angles, u


@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_float32_probabilities_and_gradients_agree_with_float64(mode: str) -> None:
    """Same inputs and uniforms in both precisions: the same spikes (no uniform falls within float32
    rounding of its probability here), probabilities within 1e-5 and BPTT gradients within float32
    tolerance (relative 1e-4 of each gradient's scale, since a gradient sums ~T*B terms)."""
    z, params, u = layer(3)
    g = torch.Generator().manual_seed(4)
    g_spikes = torch.randn(STEPS, BATCH, N, generator=g, dtype=torch.float64)
    g_probs = torch.randn(STEPS, BATCH, N, generator=g, dtype=torch.float64)
    results = {}
    for dtype in (torch.float64, torch.float32):
        run = _kernel_forward(z.to(dtype), SQSParams(*(a.to(dtype) for a in params)), mode, u.to(dtype), False)
        grads = _kernel_backward(run.saved, g_spikes.to(dtype), g_probs.to(dtype), mode, "sigmoid", 0.1)
        assert run.probs.dtype == dtype and all(gr.dtype == dtype for gr in grads)
        results[dtype] = (run.spikes, run.probs, *grads)
    wide, narrow = results[torch.float64], results[torch.float32]
    assert torch.equal(wide[0], narrow[0].double())
    assert torch.allclose(wide[1], narrow[1].double(), atol=1e-5)
    for got, want in zip(narrow[2:], wide[2:], strict=True):
        scale = float(want.abs().max())
        assert torch.allclose(got.double(), want, atol=1e-4 * scale, rtol=1e-4)


@pytest.mark.parametrize("mode", MEMORY_MODES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_recorded_trajectory_equals_step_by_step_sampling(mode: MemoryMode, dtype: torch.dtype) -> None:
    """sqs_layer_trace gives sqs_step's spikes, probabilities and entering memory states (same draws)."""
    z, params, _ = layer(5)
    z, params = z.to(dtype), SQSParams(*(a.to(dtype) for a in params))
    spikes, probs, state = sqs_layer_trace(z, params, mode, torch.Generator().manual_seed(2))
    gen, current = torch.Generator().manual_seed(2), initial_state(BATCH, N, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for t in range(STEPS):
        for got, want in zip(state, current, strict=True):
            assert torch.allclose(got[t], want, atol=tol)
        s, p, current = sqs_step(z[t], current, params, mode, gen)
        assert torch.equal(spikes[t], s)
        assert torch.allclose(probs[t], p, atol=tol)


def test_the_kernels_sine_and_cosine_are_within_two_ulps_of_libm() -> None:
    """The branch-free polynomial sincos over every quarter turn, both signs and the whole allowed range."""
    g = torch.Generator().manual_seed(0)
    small = (torch.rand(200_000, generator=g, dtype=torch.float64) * 2 - 1) * 10
    turns = torch.arange(-40, 41, dtype=torch.float64) * (math.pi / 4)  # octant boundaries
    large = (torch.rand(20_000, generator=g, dtype=torch.float64) * 2 - 1) * kernels.ANGLE_LIMIT
    h = torch.cat([small, turns, turns + 1e-12, large])
    sin_h, cos_h = kernels.sincos_array(h.numpy())
    assert torch.allclose(torch.from_numpy(sin_h), torch.sin(h), rtol=0, atol=4.5e-16)
    assert torch.allclose(torch.from_numpy(cos_h), torch.cos(h), rtol=0, atol=4.5e-16)


def test_the_float32_sine_and_cosine_are_within_two_float32_ulps() -> None:
    """The float32 polynomial sincos against float64 libm on the same float32 angles, over every quarter
    turn and the whole float32 range (an absolute bound: 2 ulps of 1 in float32 is 1.2e-7)."""
    g = torch.Generator().manual_seed(1)
    small = (torch.rand(200_000, generator=g, dtype=torch.float64) * 2 - 1) * 10
    turns = torch.arange(-40, 41, dtype=torch.float64) * (math.pi / 4)
    large = (torch.rand(20_000, generator=g, dtype=torch.float64) * 2 - 1) * kernels.ANGLE_LIMIT_FLOAT32
    h = torch.cat([small, turns, large]).to(torch.float32)
    sin_h, cos_h = kernels.sincos_array(h.numpy())
    assert sin_h.dtype == cos_h.dtype == h.numpy().dtype
    exact = h.double()
    assert torch.allclose(torch.from_numpy(sin_h).double(), torch.sin(exact), rtol=0, atol=1.2e-7)
    assert torch.allclose(torch.from_numpy(cos_h).double(), torch.cos(exact), rtol=0, atol=1.2e-7)


def test_currents_beyond_the_angle_limit_or_not_finite_are_refused() -> None:
    z, params, _ = layer(1)
    for bad in (float("nan"), float("inf"), 1e7):
        z_bad = z.clone()
        z_bad[2, 3, 4] = bad
        with pytest.raises(ValueError, match="not finite or give an angle beyond 1e"):
            sqs_layer(z_bad, params, "quantum", torch.Generator().manual_seed(0))
    z_bad = z.clone()
    z_bad[0, 0, 0] = 1e4  # within the float64 limit, beyond float32's
    sqs_layer(z_bad, params, "quantum", torch.Generator().manual_seed(0))
    single = SQSParams(*(a.float() for a in params))
    with pytest.raises(ValueError, match="not finite or give an angle beyond 6000 rad"):
        sqs_layer(z_bad.float(), single, "quantum", torch.Generator().manual_seed(0))
