"""Independent references for the backend tests: a numpy closed-form joint spike-train distribution
(sqs-model.md §1, branching the unnormalised pure memory state), checked here against an explicit
two-qubit density-matrix simulation with qiskit.quantum_info, and a chi-square helper."""

from __future__ import annotations

import numpy as np
from qiskit.quantum_info import DensityMatrix, Operator
from scipy import stats


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a / 2), np.sin(a / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def joint_distribution(z: np.ndarray, angles: np.ndarray, memoryless: bool = False) -> np.ndarray:
    """Exact p(train) for n independent neurons: z (T, n), angles (3, n) -> (2**T, n); bit t of the
    index is the spike at step t."""
    T, n = z.shape
    out = np.zeros((2**T, n))
    for k in range(n):
        te, tm, ti = angles[:, k]
        # branches: index -> unnormalised memory amplitudes
        branches = {0: np.array([1.0 + 0j, 0.0])}
        for t in range(T):
            phi = np.pi * max(z[t, k], 0.0)
            a0, a1 = phi + ti, phi + ti + te
            A0 = _rx(tm) @ np.diag([np.cos(a0 / 2), np.cos(a1 / 2)])
            A1 = _rx(tm) @ np.diag([-1j * np.sin(a0 / 2), -1j * np.sin(a1 / 2)])
            new = {}
            for idx, v in branches.items():
                if memoryless:
                    v = np.array([np.linalg.norm(v), 0.0])
                new[idx] = A0 @ v
                new[idx | (1 << t)] = A1 @ v
            branches = new
        for idx, v in branches.items():
            out[idx, k] = float(np.vdot(v, v).real)
    return out


def train_index(spikes: np.ndarray) -> np.ndarray:
    """Spikes (T, ...) 0/1 -> integer train index (...), bit t = step t."""
    T = spikes.shape[0]
    w = (1 << np.arange(T)).reshape((T,) + (1,) * (spikes.ndim - 1))
    return (spikes.astype(np.int64) * w).sum(axis=0)


def chi_square_pvalue(observed_idx: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square p-value of integer outcomes against ``probs``; bins with expected count < 5
    are pooled into one bin."""
    N = observed_idx.size
    counts = np.bincount(observed_idx.ravel(), minlength=probs.size).astype(float)
    expected = probs * N
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    exp = exp * obs.sum() / exp.sum()
    return float(stats.chisquare(obs, exp).pvalue)


def test_reference_matches_density_matrix_simulation() -> None:
    rng = np.random.default_rng(11)
    T = 3
    z = rng.uniform(-0.5, 1.0, size=(T, 1))
    te, tm, ti = rng.uniform(0, 2 * np.pi, 3)
    ref = joint_distribution(z, np.array([[te], [tm], [ti]]))
    # explicit 2-qubit density matrices, basis index 2 * memory + io; branch on each I/O outcome
    crx = np.eye(4, dtype=complex)
    crx[2:, 2:] = _rx(te)  # memory = 1 -> I/O rotated
    proj = [np.diag([1, 0, 1, 0]).astype(complex), np.diag([0, 1, 0, 1]).astype(complex)]
    states = {0: DensityMatrix.from_label("00").data}
    for t in range(T):
        emb = np.kron(np.eye(2), _rx(np.pi * max(z[t, 0], 0)))
        U = Operator(np.kron(_rx(tm), _rx(ti)) @ crx @ emb).data
        new = {}
        for i, rho in states.items():
            r = U @ rho @ U.conj().T
            for s in (0, 1):
                post = proj[s] @ r @ proj[s]
                mem = post.reshape(2, 2, 2, 2).trace(axis1=1, axis2=3)  # trace out I/O, then reset it
                new[i | (s << t)] = np.kron(mem, np.diag([1, 0]))
        states = new
    dm = np.array([np.trace(states[i]).real for i in range(2**T)])
    np.testing.assert_allclose(ref[:, 0], dm, atol=1e-12)
    assert abs(ref.sum() - 1) < 1e-12


def test_reference_matches_engine_oracle_when_available() -> None:
    import pytest

    neuron = pytest.importorskip("sqsnn.neuron")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z = rng.uniform(-0.5, 1.0, size=(4, 3))
    ang = rng.uniform(0, 2 * np.pi, size=(3, 3))
    params = neuron.SQSParams(*(torch.tensor(a) for a in ang))
    got = neuron.spike_train_distribution(torch.tensor(z), params, "quantum").numpy()
    np.testing.assert_allclose(got, joint_distribution(z, ang), atol=1e-10)
