"""Single-shot sampling and gradients of the N = N_M = 1 engine."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from sqsnn.neuron import (
    MEMORY_MODES,
    SQSParams,
    initial_state,
    spike_train_distribution,
    sqs_layer,
    sqs_step,
)

STEPS = 4


def make_layer(n: int, seed: int, requires_grad: bool = False) -> tuple[torch.Tensor, SQSParams]:
    g = torch.Generator().manual_seed(seed)
    angles = [
        (torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi - math.pi).requires_grad_(requires_grad)
        for _ in range(3)
    ]
    z = torch.randn(STEPS, n, generator=g, dtype=torch.float64) * 0.6 + 0.2
    return z, SQSParams(*angles)


def train_index(spikes: torch.Tensor) -> torch.Tensor:
    """(T, B, n) spikes -> (B, n) spike-train index with bit t = spike at step t."""
    weights = (2 ** torch.arange(spikes.shape[0], dtype=torch.float64))[:, None, None]
    return (spikes * weights).sum(0).long()


@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_sampled_trains_follow_exact_joint_distribution(mode: str) -> None:
    """Chi-square goodness of fit of 40,000 single-shot trains per neuron against all 2^T probabilities."""
    n, shots = 3, 40_000
    z, params = make_layer(n, seed=7)
    exact = spike_train_distribution(z, params, mode)  # (2^T, n)
    spikes, _ = sqs_layer(z[:, None, :].expand(STEPS, shots, n), params, mode, torch.Generator().manual_seed(1))
    idx = train_index(spikes)
    for k in range(n):
        observed = torch.bincount(idx[:, k], minlength=2**STEPS).double()
        expected = exact[:, k] * shots
        keep = expected > 5  # pool cells too rare for the chi-square approximation
        obs = torch.cat([observed[keep], observed[~keep].sum().reshape(1)])
        exp = torch.cat([expected[keep], expected[~keep].sum().reshape(1)])
        if exp[-1] < 5:
            obs, exp = obs[:-1], exp[:-1]
        assert observed[~keep].sum() <= max(5.0, 10 * float(expected[~keep].sum()))
        chi2 = float(((obs - exp) ** 2 / exp).sum())
        p_value = stats.chi2.sf(chi2, df=len(obs) - 1)
        assert p_value > 1e-3, (mode, k, chi2, p_value)


@pytest.mark.parametrize("mode", MEMORY_MODES)
@pytest.mark.parametrize("surrogate", ["sigmoid", "straight-through"])
def test_fused_layer_equals_stepwise_autograd(mode: str, surrogate: str) -> None:
    """Same spikes, probabilities and gradients as T calls of sqs_step under plain autograd."""
    n, batch = 5, 7
    z0, params = make_layer(n, seed=11, requires_grad=True)
    z = (z0[:, None, :] + 0.3 * torch.randn(STEPS, batch, n, dtype=torch.float64)).detach().requires_grad_(True)
    w_s = torch.randn(STEPS, batch, n, dtype=torch.float64)
    w_p = torch.randn(STEPS, batch, n, dtype=torch.float64)

    spikes, probs = sqs_layer(z, params, mode, torch.Generator().manual_seed(3), surrogate)
    loss = (w_s * spikes).sum() + (w_p * probs).sum()
    grads = torch.autograd.grad(loss, [z, *params], allow_unused=True)

    gen = torch.Generator().manual_seed(3)
    state = initial_state(batch, n)
    ref_s, ref_p = [], []
    for t in range(STEPS):
        s, p, state = sqs_step(z[t], state, params, mode, gen, surrogate)
        ref_s.append(s)
        ref_p.append(p)
    ref_loss = (w_s * torch.stack(ref_s)).sum() + (w_p * torch.stack(ref_p)).sum()
    ref_grads = torch.autograd.grad(ref_loss, [z, *params], allow_unused=True)

    assert torch.equal(spikes, torch.stack(ref_s).detach())
    assert torch.allclose(probs, torch.stack(ref_p), atol=1e-14)
    for got, ref in zip(grads, ref_grads, strict=True):
        ref_t = torch.zeros_like(got) if ref is None else ref
        got_t = torch.zeros_like(ref_t) if got is None else got
        assert torch.allclose(got_t, ref_t, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_probability_gradients_match_finite_differences(mode: str) -> None:
    """d/dθ and d/dz of a weighted sum of the p_t along a fixed sampled history (memory included)."""
    n, batch = 4, 6
    z0, params = make_layer(n, seed=5)
    z = z0[:, None, :] + 0.3 * torch.randn(
        STEPS, batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    weights = torch.randn(STEPS, batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

    def objective(zz: torch.Tensor, pp: SQSParams) -> tuple[torch.Tensor, torch.Tensor]:
        spikes, probs = sqs_layer(zz, pp, mode, torch.Generator().manual_seed(9))
        return (weights * probs).sum(), spikes

    leaves = [z.clone().requires_grad_(True), *(a.clone().requires_grad_(True) for a in params)]
    value, spikes = objective(leaves[0], SQSParams(*leaves[1:]))
    grads = torch.autograd.grad(value, leaves)
    eps = 1e-6
    for li, leaf in enumerate(leaves):
        flat = leaf.detach().reshape(-1)
        for j in range(0, flat.numel(), max(1, flat.numel() // 12)):
            if li == 0 and abs(float(flat[j])) < 1e-3:
                continue  # the kink of max(z, 0)
            vals = []
            for sign in (1, -1):
                bumped = [x.detach().clone() for x in leaves]
                bumped[li].reshape(-1)[j] += sign * eps
                v, s = objective(bumped[0], SQSParams(*bumped[1:]))
                assert torch.equal(s, spikes), "perturbation changed the sampled history; pick another seed"
                vals.append(float(v))
            fd = (vals[0] - vals[1]) / (2 * eps)
            assert float(grads[li].reshape(-1)[j]) == pytest.approx(fd, abs=1e-6, rel=1e-5)


def test_spike_surrogate_gradient() -> None:
    """d spikes / d p is p(1 - p) for the sigmoid surrogate and 1 for straight-through."""
    z, params = make_layer(3, seed=8)
    zz = z[:, None, :].expand(STEPS, 2, 3).clone().requires_grad_(True)
    for surrogate in ("sigmoid", "straight-through"):
        spikes, probs = sqs_layer(zz, params, "memoryless", torch.Generator().manual_seed(0), surrogate)
        g_spk = torch.autograd.grad(spikes.sum(), zz, retain_graph=True)[0]
        slope = probs * (1 - probs) if surrogate == "sigmoid" else torch.ones_like(probs)
        g_ref = torch.autograd.grad((probs * slope.detach()).sum(), zz)[0]
        assert torch.allclose(g_spk, g_ref, atol=1e-14)


def test_invalid_mode_and_shape_are_refused() -> None:
    z, params = make_layer(2, seed=0)
    with pytest.raises(ValueError, match="memory mode"):
        sqs_layer(z[:, None, :], params, "classical", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(T, B, n\)"):
        sqs_layer(z, params, "quantum", None)


@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_the_embedding_gradient_is_zero_at_z_equal_zero_in_both_paths(mode: str) -> None:
    """d max(z, 0)/dz = 1[z > 0]: no gradient reaches a current that is exactly 0 (fused kernel and
    step-by-step autograd alike), while a current just above 0 gets pi * dp/dphi."""
    n, batch = 4, 3
    _, params = make_layer(n, seed=5, requires_grad=True)
    z = torch.zeros(STEPS, batch, n, dtype=torch.float64)
    z[:, :, 1] = 1e-9  # just above 0: the embedding's slope is pi there
    z.requires_grad_(True)
    w = torch.randn(STEPS, batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, probs = sqs_layer(z, params, mode, torch.Generator().manual_seed(1))
    (fused,) = torch.autograd.grad((w * probs).sum(), [z])
    gen, state, ref = torch.Generator().manual_seed(1), initial_state(batch, n), []
    for t in range(STEPS):
        _, p, state = sqs_step(z[t], state, params, mode, gen)
        ref.append(p)
    (stepwise,) = torch.autograd.grad((w * torch.stack(ref)).sum(), [z])
    at_zero = torch.ones(n, dtype=torch.bool)
    at_zero[1] = False
    assert torch.equal(fused[..., at_zero], torch.zeros_like(fused[..., at_zero]))
    assert torch.equal(stepwise[..., at_zero], torch.zeros_like(stepwise[..., at_zero]))
    assert torch.allclose(fused, stepwise, atol=1e-12)
    # independent check at the last step (no later step depends on it): p_T's slope in phi times pi
    if mode == "memoryless":
        a = params.theta_in[1].detach()  # phi ~ 0
        expected = math.pi * torch.sin(a) / 2 * w[-1, :, 1]
        assert torch.allclose(fused[-1, :, 1], expected, atol=1e-7)
    assert fused[..., 1].abs().sum() > 0


@pytest.mark.parametrize("mode", MEMORY_MODES)
def test_embedding_leak_is_a_backward_only_slope_below_zero_in_both_paths(mode: str) -> None:
    """leak > 0: same spikes and probabilities; the gradient reaching z <= 0 is leak times the one a
    current just above 0 would get, identical in the fused kernel and in step-by-step autograd."""
    n, batch, leak = 4, 3, 0.25
    _, params = make_layer(n, seed=7, requires_grad=True)
    g = torch.Generator().manual_seed(2)
    z = (torch.randn(STEPS, batch, n, generator=g, dtype=torch.float64) * 0.5).requires_grad_(True)
    w = torch.randn(STEPS, batch, n, generator=g, dtype=torch.float64)
    s0, p0 = sqs_layer(z, params, mode, torch.Generator().manual_seed(1))
    s1, p1 = sqs_layer(z, params, mode, torch.Generator().manual_seed(1), leak=leak)
    assert torch.equal(s0, s1) and torch.equal(p0, p1)
    (fused,) = torch.autograd.grad((w * p1).sum() + (w * s1).sum(), [z])
    gen, state, ref_s, ref_p = torch.Generator().manual_seed(1), initial_state(batch, n), [], []
    for t in range(STEPS):
        s, p, state = sqs_step(z[t], state, params, mode, gen, leak=leak)
        ref_s.append(s)
        ref_p.append(p)
    (stepwise,) = torch.autograd.grad((w * torch.stack(ref_p)).sum() + (w * torch.stack(ref_s)).sum(), [z])
    assert torch.allclose(fused, stepwise, atol=1e-10)
    below = z.detach() <= 0
    assert below.any() and fused[below].abs().sum() > 0
    # at the last step nothing later depends on z: its gradient is w * (1 + ds/dp) * dp/dphi * pi * slope
    (exact,) = torch.autograd.grad((w * p0).sum() + (w * s0).sum(), [z])
    last = below[-1]
    assert torch.equal(exact[-1][last], torch.zeros_like(exact[-1][last]))
    if mode == "memoryless":
        a = params.theta_in.detach().expand(batch, n)[last]
        p = torch.sin(a / 2) ** 2
        expected = w[-1][last] * (1 + p * (1 - p)) * torch.sin(a) / 2 * math.pi * leak
        assert torch.allclose(fused[-1][last], expected, atol=1e-12)
