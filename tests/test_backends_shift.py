"""Shot-based probabilities through backends for the local rule, against the exact engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backends.aer import AerBackend
from backends.braket import BraketBackend
from backends.compiler import memory_angle
from backends.exact import ExactBackend
from backends.shift import BackendProbability, evaluate_variants
from sqsnn.neuron import SQSParams, initial_state, spike_probability, spike_train_distribution, sqs_step
from sqsnn.training.estimators import shifted_params

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def recorded_states(z: torch.Tensor, params: SQSParams, mode: str, seed: int) -> tuple[torch.Tensor, ...]:
    """Memory states entering each step along a sampled trajectory, fields (T, B, n)."""
    gen = torch.Generator().manual_seed(seed)
    state = initial_state(z.shape[1], z.shape[2])
    ys, zs, lasts = [], [], []
    for t in range(z.shape[0]):
        ys.append(state.bloch_y)
        zs.append(state.bloch_z)
        lasts.append(state.last_spike)
        _, _, state = sqs_step(z[t], state, params, mode, gen)  # type: ignore[arg-type]
    return torch.stack(ys), torch.stack(zs), torch.stack(lasts)


def test_memory_angle_prepares_the_recorded_state() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(-np.pi, np.pi, 50)
    np.testing.assert_allclose(memory_angle(-np.sin(a), np.cos(a)), a, atol=1e-12)


@pytest.mark.parametrize("mode", ["quantum", "memoryless", "official"])
@pytest.mark.parametrize("backend", ["aer", "exact"])
def test_backend_probability_of_shifted_variants_matches_the_engine(mode: str, backend: str) -> None:
    gen = torch.Generator().manual_seed(7)
    T, B, n, S = 3, 4, 3, 400
    z = torch.rand(T, B, n, generator=gen, dtype=torch.float64) * 1.5 - 0.3
    params = SQSParams(*(torch.rand(n, generator=gen, dtype=torch.float64) * 2 * np.pi for _ in range(3)))
    y, zb, last = recorded_states(z, params, mode, seed=3)
    from sqsnn.neuron import SQSState

    state = SQSState(y, zb, last)
    variants = shifted_params(params, np.pi / 2)  # (6, 1, 1, n)
    be = AerBackend() if backend == "aer" else ExactBackend()
    prob = BackendProbability(be, shots=S, seed=11)
    est = prob(z, state, variants, mode)  # type: ignore[arg-type]
    exact = spike_probability(z, state, variants, mode)  # type: ignore[arg-type]
    assert est.shape == exact.shape == (6, T, B, n) and prob.submissions == 1
    sd = torch.sqrt(exact * (1 - exact) / S).clamp_min(1.0 / S)
    # 216 cells at 5 sigma: false-alarm probability about 1e-4
    assert torch.all((est - exact).abs() <= 5 * sd), (est - exact).abs().max()


def test_braket_local_runs_a_prepared_memory_program() -> None:
    gen = torch.Generator().manual_seed(2)
    z = torch.rand(2, 2, 1, generator=gen, dtype=torch.float64)
    params = SQSParams(*(torch.rand(1, generator=gen, dtype=torch.float64) * 2 * np.pi for _ in range(3)))
    y, zb, last = recorded_states(z, params, "quantum", seed=1)
    from sqsnn.neuron import SQSState

    state = SQSState(y, zb, last)
    S = 400
    est = BackendProbability(BraketBackend("sv", local=True), shots=S)(z, state, params, "quantum")
    exact = spike_probability(z, state, params, "quantum")
    sd = torch.sqrt(exact * (1 - exact) / S).clamp_min(1.0 / S)
    assert torch.all((est - exact).abs() <= 5 * sd)


def test_evaluate_variants_gives_marginals_of_every_variant_in_one_job() -> None:
    gen = torch.Generator().manual_seed(9)
    T, B, P, n, V, S = 3, 2, 5, 2, 3, 1500
    u = (torch.rand(T, B, P, generator=gen) < 0.5).double()
    W = torch.rand(V, n, P, generator=gen, dtype=torch.float64) * 0.6 - 0.1
    ang = torch.rand(V, 3, n, generator=gen, dtype=torch.float64) * 2 * np.pi
    be = AerBackend()
    freq = evaluate_variants(be, u, W, ang, shots=S, seed=4)
    assert freq.shape == (V, T, B, n)
    for v in range(V):
        for b in range(B):
            z = u[:, b] @ W[v].T  # (T, n)
            dist = spike_train_distribution(z, SQSParams(*ang[v]), "quantum")  # (2**T, n)
            idx = torch.arange(2**T)
            marg = torch.stack([dist[(idx >> t) & 1 == 1].sum(0) for t in range(T)])  # (T, n)
            sd = torch.sqrt(marg * (1 - marg) / S).clamp_min(1.0 / S)
            assert torch.all((freq[v, :, b] - marg).abs() <= 5 * sd)


def test_backend_probability_reports_all_or_nothing_frequencies_at_half_a_shot() -> None:
    """p = 0 (z <= 0, every angle 0) and p = 1 (theta_in = pi) come back as 1/(2S) and 1 - 1/(2S)."""
    from sqsnn.neuron import SQSState

    S = 20
    z = torch.full((2, 3, 2), -0.5, dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    params = SQSParams(zeros, zeros, torch.tensor([0.0, np.pi], dtype=torch.float64))
    state = SQSState(*(f.expand(2, 3, 2) for f in initial_state(3, 2)))
    est = BackendProbability(ExactBackend(), shots=S, seed=0)(z, state, params, "quantum")
    torch.testing.assert_close(est[..., 0], torch.full((2, 3), 0.5 / S, dtype=torch.float64))
    torch.testing.assert_close(est[..., 1], torch.full((2, 3), 1 - 0.5 / S, dtype=torch.float64))
