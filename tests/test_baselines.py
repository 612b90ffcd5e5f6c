"""LIF and QLIF baselines against independent computations (hand-unrolled loops, qiskit density matrices)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from qiskit.circuit.library import RXGate
from qiskit.quantum_info import DensityMatrix, Kraus, Operator

from sqsnn.baselines.lif import (
    LIFConfig,
    LIFNetwork,
    LIFParams,
    LIFState,
    lif_parameter_count,
    lif_step,
    matched_hidden_sizes,
)
from sqsnn.baselines.qlif import (
    QLIFConfig,
    QLIFNetwork,
    QLIFParams,
    qlif_evolve,
    qlif_initial_state,
    qlif_step,
)
from sqsnn.baselines.surrogate import spike_fn
from sqsnn.network import load_model, save_model


def test_lif_layer_matches_hand_unrolled_loop() -> None:
    gen = torch.Generator().manual_seed(1)
    cfg = LIFConfig(sizes=[7, 5, 3], beta=0.8, threshold=1.0, bias=True, weight_gain=3.0, seed=4)
    net = LIFNetwork(cfg)
    with torch.no_grad():
        net.layers[0].bias.copy_(torch.linspace(-0.2, 0.3, 5, dtype=torch.float64))
    x = (torch.rand(9, 2, 7, generator=gen, dtype=torch.float64) < 0.5).double()
    out = net(x, gen)
    h = x.numpy()
    for layer, got in zip(net.layers, out.spikes, strict=True):
        w = layer.weight.detach().numpy()
        b = layer.bias.detach().numpy()
        expect = np.zeros((9, 2, w.shape[0]))
        for bi in range(2):
            for n in range(w.shape[0]):
                v = 0.0
                for t in range(9):
                    v = 0.8 * v + float(sum(w[n, p] * h[t, bi, p] for p in range(w.shape[1])) + b[n])
                    if v > 1.0:
                        expect[t, bi, n] = 1.0
                        v = 0.0
        np.testing.assert_array_equal(got.detach().numpy(), expect)
        h = expect
    assert out.spikes[0].sum() > 0, "test input must make the hidden layer fire"
    assert all(torch.equal(s, p) for s, p in zip(out.spikes, out.probs, strict=True))


def test_lif_surrogate_gradient_is_fast_sigmoid() -> None:
    current = torch.tensor([[0.3, 0.9, 1.4]], dtype=torch.float64, requires_grad=True)
    params = LIFParams(beta=0.9, threshold=1.0, slope=5.0)
    spikes, _ = lif_step(current, LIFState(torch.zeros(1, 3, dtype=torch.float64)), params)
    spikes.sum().backward()
    assert spikes.tolist() == [[0.0, 0.0, 1.0]]
    expect = [1.0 / (1.0 + 5.0 * abs(c - 1.0)) ** 2 for c in (0.3, 0.9, 1.4)]
    np.testing.assert_allclose(current.grad.numpy()[0], expect, rtol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_matched_hidden_sizes_is_the_best_integer_width(bias: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = [int(rng.integers(1, 50)), int(rng.integers(1, 30)), int(rng.integers(1, 12))]
        target = int(rng.integers(1, 5000))
        got = matched_hidden_sizes(sizes, target, bias=bias)
        brute = min(
            range(1, 6000),
            key=lambda h: (abs(lif_parameter_count([sizes[0], h, sizes[2]], bias=bias) - target), h),
        )
        assert got == [sizes[0], brute, sizes[2]]


def test_matched_lif_counts_match_an_sqsnn() -> None:
    # SQSNN 784-1000-10: weights 784*1000 + 1000*10 plus 3 angles per neuron (1010 neurons)
    target = 784 * 1000 + 1000 * 10 + 3 * 1010
    sizes = matched_hidden_sizes([784, 1000, 10], target, bias=True)
    assert sizes == [784, 1003, 10]  # 795*h + 10 closest to 797030 at h = 1003 (797395; h=1002 gives 796600)
    net = LIFNetwork(LIFConfig(sizes=sizes, bias=True))
    assert net.num_parameters() == lif_parameter_count(sizes, bias=True) == 795 * 1003 + 10
    assert abs(net.num_parameters() - target) <= (784 + 10 + 1) / 2
    with pytest.raises(ValueError, match="hidden layer"):
        matched_hidden_sizes([784, 10], target, bias=True)


def _qiskit_qlif_trace(drive: np.ndarray, relax: np.ndarray, params: QLIFParams) -> tuple[list, list]:
    """Excitation and spikes of one neuron from explicit 2x2 density matrices (qiskit quantum_info)."""
    rho = DensityMatrix.from_label("0")
    p1s, spikes = [], []
    for a, b in zip(drive, relax, strict=True):
        if a > 0:
            rho = rho.evolve(Operator(RXGate(math.pi * abs(a))))
        else:
            kappa = math.exp(-params.tau_scale * abs(b) / params.t1)
            damping = Kraus([np.array([[1, 0], [0, math.sqrt(kappa)]]), np.array([[0, math.sqrt(1 - kappa)], [0, 0]])])
            rho = rho.evolve(damping)
        p1 = float(np.real(rho.data[1, 1]))
        p1s.append(p1)
        spikes.append(1.0 if p1 > params.threshold else 0.0)
        if p1 > params.threshold:
            rho = DensityMatrix.from_label("0")
    return p1s, spikes


def test_qlif_step_matches_qiskit_density_matrix() -> None:
    rng = np.random.default_rng(3)
    params = QLIFParams()
    T, n = 60, 6
    drive = rng.normal(0.0, 0.35, size=(T, n))
    relax = rng.normal(0.0, 0.05, size=(T, n))
    state = qlif_initial_state(1, n)
    got_p1, got_s = [], []
    for t in range(T):
        s, p1, state = qlif_step(torch.tensor(drive[t][None]), torch.tensor(relax[t][None]), state, params)
        got_p1.append(p1[0].numpy())
        got_s.append(s[0].numpy())
    for k in range(n):
        p1s, spikes = _qiskit_qlif_trace(drive[:, k], relax[:, k], params)
        np.testing.assert_allclose(np.array(got_p1)[:, k], p1s, atol=1e-12)
        np.testing.assert_array_equal(np.array(got_s)[:, k], spikes)
    total = np.array(got_s).sum()
    assert 0 < total < T * n, "trajectory must include spikes and silences"


def test_qlif_evolution_gradient_matches_finite_differences() -> None:
    params = QLIFParams()
    drive = torch.tensor([[0.4, -0.3, 0.7]], dtype=torch.float64, requires_grad=True)
    relax = torch.tensor([[0.1, -0.02, 0.3]], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([[0.3, -0.5, 0.1]], dtype=torch.float64, requires_grad=True)
    z0 = torch.tensor([[0.8, 0.2, -0.6]], dtype=torch.float64, requires_grad=True)

    def f(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(qlif_evolve(a, b, qlif_initial_state(1, 3)._replace(bloch_y=y, bloch_z=z), params))

    assert torch.autograd.gradcheck(f, (drive, relax, y0, z0))


def test_qlif_network_shapes_counts_and_spike_gradient() -> None:
    net = QLIFNetwork(QLIFConfig(sizes=[16, 8, 3], weight_gain=2.0, seed=2))
    assert net.num_parameters() == 2 * (16 * 8 + 8 * 3)
    x = (torch.rand(25, 4, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.5).double()
    out = net(x, torch.Generator())
    assert [s.shape for s in out.spikes] == [(25, 4, 8), (25, 4, 3)]
    assert net.predict(out).shape == (4,)
    out.spikes[-1].sum().backward()
    assert net.layers[0].weight_q.grad is not None and net.layers[0].weight_q.grad.abs().sum() > 0
    assert net.layers[0].weight_t.grad is not None


def test_spike_fn_surrogate() -> None:
    u = torch.tensor([-0.1, 0.0, 0.2], dtype=torch.float64, requires_grad=True)
    s = spike_fn(u, 25.0)
    s.sum().backward()
    assert s.tolist() == [0.0, 0.0, 1.0]
    np.testing.assert_allclose(u.grad.numpy(), [1 / (1 + 2.5) ** 2, 1.0, 1 / (1 + 5.0) ** 2])


def test_baselines_round_trip_through_model_checkpoints(tmp_path: Path) -> None:
    x = (torch.rand(6, 3, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64) < 0.5).double()
    for net in (
        LIFNetwork(LIFConfig(sizes=[10, 7, 2], weight_gain=4.0, seed=1)),
        QLIFNetwork(QLIFConfig(sizes=[10, 7, 2], weight_gain=2.0, seed=1)),
    ):
        save_model(net, tmp_path / f"{net.kind}.pt", note="x")
        loaded, meta = load_model(tmp_path / f"{net.kind}.pt")
        assert type(loaded) is type(net) and meta == {"note": "x"}
        assert loaded.num_parameters() == net.num_parameters()
        for a, b in zip(net(x, None).spikes, loaded(x, None).spikes, strict=True):
            assert torch.equal(a, b)
