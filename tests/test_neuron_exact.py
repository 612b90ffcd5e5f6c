"""The SQS engines against an explicit full-register density-matrix computation.

The reference here builds the whole (I/O ⊗ memory) register as a numpy density matrix, applies the step
unitary assembled from Kronecker products, measures with projectors, collapses and partial-traces the
I/O qubits — nothing is shared with the engines under test.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from sqsnn.kraus import GeneralParams, joint_distribution, kraus_operators
from sqsnn.neuron import SQSParams, initial_state, next_state, spike_probability, spike_train_distribution

I2 = np.eye(2)
P0 = np.diag([1.0, 0.0])
P1 = np.diag([0.0, 1.0])


def rx(a: float) -> np.ndarray:
    return np.array([[math.cos(a / 2), -1j * math.sin(a / 2)], [-1j * math.sin(a / 2), math.cos(a / 2)]])


def op_on(gates: dict[int, np.ndarray], nq: int) -> np.ndarray:
    out = np.eye(1)
    for q in range(nq):
        out = np.kron(out, gates.get(q, I2))
    return out


def crx_full(angle: float, control: int, target: int, nq: int) -> np.ndarray:
    return op_on({control: P0}, nq) + op_on({control: P1, target: rx(angle)}, nq)


def step_unitary(z: np.ndarray, te: np.ndarray, tm: np.ndarray, ti: np.ndarray, n_io: int, n_mem: int) -> np.ndarray:
    """Qubits 0..N-1 are I/O, N..N+N_M-1 memory (big-endian kron order); L layers as documented in kraus.py."""
    nq = n_io + n_mem
    u = op_on({n: rx(math.pi * max(z[n], 0.0)) for n in range(n_io)}, nq)
    for layer in range(te.shape[0]):
        for m in range(n_mem):
            for n in range(n_io):
                u = crx_full(te[layer, m, n], n_io + m, n, nq) @ u
        gates = {n_io + m: rx(tm[layer, m]) for m in range(n_mem)}
        gates.update({n: rx(ti[layer, n]) for n in range(n_io)})
        u = op_on(gates, nq) @ u
    return u


def measure_and_reset(rho: np.ndarray, outcome: tuple[int, ...], n_io: int, n_mem: int) -> tuple[float, np.ndarray]:
    """Project the I/O qubits on ``outcome``; return its probability and the normalised memory (partial trace)."""
    nq = n_io + n_mem
    proj = op_on({n: (P1 if outcome[n] else P0) for n in range(n_io)}, nq)
    post = proj @ rho @ proj
    prob = float(np.trace(post).real)
    dm = 2**n_mem
    mem = np.einsum("ajak->jk", post.reshape(2**n_io, dm, 2**n_io, dm))
    return prob, mem / prob


def reference_history_probability(z, te, tm, ti, n_io, n_mem, history) -> float:
    """Probability of a full outcome history by explicit collapse (sigma_1 = |0><0|)."""
    dm = 2**n_mem
    sigma = np.zeros((dm, dm), complex)
    sigma[0, 0] = 1
    zero_io = np.zeros((2**n_io, 2**n_io))
    zero_io[0, 0] = 1
    total = 1.0
    for t, outcome in enumerate(history):
        u = step_unitary(z[t], te, tm, ti, n_io, n_mem)
        rho = u @ np.kron(zero_io, sigma) @ u.conj().T
        prob, sigma = measure_and_reset(rho, outcome, n_io, n_mem)
        total *= prob
        if prob < 1e-300:
            return 0.0
    return total


@pytest.mark.parametrize(("n_io", "n_mem", "layers"), [(1, 1, 1), (1, 2, 1), (2, 1, 1), (1, 1, 2)])
def test_kraus_joint_distribution_equals_density_matrix(n_io: int, n_mem: int, layers: int) -> None:
    rng = np.random.default_rng(10 * n_io + n_mem + 100 * layers)
    steps = 3
    for _ in range(3):
        z = rng.normal(0.2, 0.8, size=(steps, n_io))
        te = rng.uniform(-math.pi, math.pi, size=(layers, n_mem, n_io))
        tm = rng.uniform(-math.pi, math.pi, size=(layers, n_mem))
        ti = rng.uniform(-math.pi, math.pi, size=(layers, n_io))
        params = GeneralParams(*(torch.tensor(a) for a in (te, tm, ti)))
        dist = joint_distribution(torch.tensor(z), params).numpy()
        k_size = 2**n_io
        for history in itertools.product(range(k_size), repeat=steps):
            outcomes = [tuple((k >> n) & 1 for n in range(n_io)) for k in history]
            index = sum(k * k_size**t for t, k in enumerate(history))
            ref = reference_history_probability(z, te, tm, ti, n_io, n_mem, outcomes)
            assert dist[index] == pytest.approx(ref, abs=1e-10)


def test_kraus_operators_match_qiskit_operator() -> None:
    """The step unitary's Kraus blocks equal Qiskit's Operator of the same circuit (N = N_M = 1)."""
    qiskit = pytest.importorskip("qiskit")
    from qiskit.quantum_info import Operator

    z, te, tm, ti = 0.37, 1.1, -0.6, 2.3
    qc = qiskit.QuantumCircuit(2)  # qubit 0 = I/O, qubit 1 = memory
    qc.rx(math.pi * z, 0)
    qc.crx(te, 1, 0)
    qc.rx(tm, 1)
    qc.rx(ti, 0)
    u = Operator(qc).data  # little-endian: index = io + 2 * mem
    u4 = u.reshape(2, 2, 2, 2)  # [mem_out, io_out, mem_in, io_in]
    expected = np.stack([u4[:, s, :, 0] for s in (0, 1)])
    params = GeneralParams(torch.tensor([[[te]]]), torch.tensor([[tm]]), torch.tensor([[ti]]))
    got = kraus_operators(torch.tensor([z]), params).numpy()
    assert np.allclose(got, expected, atol=1e-12)


def random_layer(n: int, seed: int) -> tuple[torch.Tensor, SQSParams]:
    g = torch.Generator().manual_seed(seed)
    angles = [torch.rand(n, generator=g, dtype=torch.float64) * 4 * math.pi - 2 * math.pi for _ in range(3)]
    return torch.randn(5, n, generator=g, dtype=torch.float64), SQSParams(*angles)


def test_closed_form_probabilities_equal_density_matrix() -> None:
    """Closed form p_t along every history equals the explicit collapse (N = N_M = 1)."""
    z, params = random_layer(4, seed=1)
    steps = 4
    for history in itertools.product((0, 1), repeat=steps):
        state = initial_state(1, 4)
        total = torch.ones(4, dtype=torch.float64)
        for t, s in enumerate(history):
            p = spike_probability(z[t][None], state, params, "quantum")[0]
            total = total * (p if s else 1 - p)
            forced = torch.full((1, 4), float(s), dtype=torch.float64)
            state = next_state(z[t][None], state, params, "quantum", forced)
        for k in range(4):
            ref = reference_history_probability(
                z[:, k : k + 1].numpy(),
                params.theta_ent[k].reshape(1, 1, 1).numpy(),
                params.theta_mem[k].reshape(1, 1).numpy(),
                params.theta_in[k].reshape(1, 1).numpy(),
                1,
                1,
                [(s,) for s in history],
            )
            assert float(total[k]) == pytest.approx(ref, abs=1e-10)


def test_official_mode_formula() -> None:
    z, params = random_layer(6, seed=2)
    state = initial_state(1, 6)
    for last in (0.0, 1.0):
        st = state._replace(last_spike=torch.full((1, 6), last, dtype=torch.float64))
        p = spike_probability(z[0][None], st, params, "official")[0]
        angle = math.pi * torch.clamp(z[0], min=0) + params.theta_mem + params.theta_in + params.theta_ent * last
        assert torch.equal(p, torch.sin(angle / 2) ** 2)


def test_memoryless_mode_ignores_memory_angles() -> None:
    z, params = random_layer(6, seed=3)
    dist = spike_train_distribution(z[:3], params, "memoryless")
    p = torch.sin((math.pi * torch.clamp(z[:3], min=0) + params.theta_in) / 2) ** 2  # (T, n)
    for k in range(8):
        bits = torch.tensor([(k >> t) & 1 for t in range(3)], dtype=torch.float64)[:, None]
        expected = torch.prod(torch.where(bits > 0, p, 1 - p), dim=0)
        assert torch.allclose(dist[k], expected, atol=1e-14)
