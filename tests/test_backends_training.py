"""Hardware-in-the-loop local learning: backend forward spikes, robust readout, metering, budget, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from backends.base import BudgetExceeded
from backends.exact import ExactBackend
from backends.meter import Spend
from backends.options import Budget, RunPolicy
from backends.registry import get_backend
from backends.training import BackendSpikes, backend_accuracy, backend_training, estimate_training
from sqsnn.datasets import Dataset, load_dataset
from sqsnn.network import NetworkConfig, SQSLayer, SQSNetwork, predict_from_output
from sqsnn.neuron import SQSParams, initial_state, next_state, spike_train_distribution, sqs_layer
from sqsnn.training.bptt import Checkpoint, EpochMetrics
from sqsnn.training.local import LocalConfig, LocalRule, record_forward, train_local
from sqsnn.training.observed import ReadoutTally, follow_observed

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _params(n: int, seed: int) -> SQSParams:
    gen = torch.Generator().manual_seed(seed)
    return SQSParams(*(torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi for _ in range(3)))


def _pattern_counts(spikes: torch.Tensor) -> np.ndarray:
    """Histogram ``(2**T, n)`` of spike trains ``(T, B, n)`` (index bit t = spike at step t)."""
    steps = spikes.shape[0]
    weights = (2 ** torch.arange(steps, dtype=torch.float64))[:, None, None]
    index = (spikes * weights).sum(0).long()  # (B, n)
    return np.stack([np.bincount(index[:, j].numpy(), minlength=2**steps) for j in range(index.shape[1])], axis=1)


def test_backend_spikes_on_exact_follow_the_exact_spike_train_distribution() -> None:
    T, B, n = 4, 4000, 3
    z_row = torch.tensor([[0.3, -0.2, 0.8], [0.6, 0.1, 0.0], [0.0, 0.9, 0.4], [1.0, 0.5, -0.1]], dtype=torch.float64)
    params = _params(n, 1)
    source = BackendSpikes(ExactBackend(), seed=5)
    spikes = source(z_row[:, None, :].expand(T, B, n).contiguous(), params, "quantum")
    expected = spike_train_distribution(z_row, params, "quantum").numpy()  # (2**T, n)
    counts = _pattern_counts(spikes)
    for j in range(n):
        keep = expected[:, j] * B >= 5  # chi-square validity: pool the rare patterns
        observed = np.append(counts[keep, j], counts[~keep, j].sum())
        exp = np.append(expected[keep, j], expected[~keep, j].sum()) * B
        if exp[-1] == 0:
            observed, exp = observed[:-1], exp[:-1]
        assert stats.chisquare(observed, exp).pvalue > 1e-4, (j, observed, exp)
    assert source.submissions == 1


def test_backend_driven_forward_on_exact_reproduces_the_engine_statistics() -> None:
    """Output spike trains of a 2-layer network (hidden spikes feed the output classically): backend-driven
    forward vs the exact engine's, two-sample chi-square per output neuron."""
    net = SQSNetwork(NetworkConfig(sizes=[6, 4, 2], mode="quantum", direct=True, weight_scale=1.5, seed=2))
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 1, 6, generator=gen, dtype=torch.float64) < 0.5).double().expand(3, 3000, 6).contiguous()
    engine = record_forward(net, x, torch.Generator().manual_seed(4))
    tally = ReadoutTally()
    backend = record_forward(net, x, gen, BackendSpikes(ExactBackend(), seed=6), tally)
    assert tally.impossible == 0 and tally.observed == 3 * 3000 * 6
    for a, b in ((engine[-1].spikes, backend[-1].spikes), (engine[0].spikes, backend[0].spikes)):
        ca, cb = _pattern_counts(a), _pattern_counts(b)
        for j in range(ca.shape[1]):
            table = np.stack([ca[:, j], cb[:, j]])
            table = table[:, table.sum(0) > 0]
            assert stats.chi2_contingency(table).pvalue > 1e-4, table
    # the recorded probabilities are the engine's along the observed spikes
    layer = net.layers[0]
    assert isinstance(layer, SQSLayer)
    path = follow_observed(layer.currents(x, None), layer.params(), "quantum", backend[0].spikes)
    torch.testing.assert_close(backend[0].probs, path.probs)


@pytest.mark.parametrize("mode", ["quantum", "memoryless", "official"])
def test_follow_observed_reproduces_the_engine_along_its_own_spikes(mode: str) -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.rand(6, 50, 3, generator=gen, dtype=torch.float64) * 1.5 - 0.3
    params = _params(3, 2)
    spikes, p = sqs_layer(z, params, mode, torch.Generator().manual_seed(4))  # type: ignore[arg-type]
    path = follow_observed(z, params, mode, spikes.detach())  # type: ignore[arg-type]
    np.testing.assert_allclose(path.probs.numpy(), p.detach().numpy(), atol=1e-12)
    assert path.impossible == 0


def _impossible_case() -> tuple[torch.Tensor, SQSParams, torch.Tensor]:
    """Neurons that cannot spike (z <= 0, all angles 0: p = 0 at every step), observed spiking every step."""
    T, B, n = 4, 3, 2
    z = -torch.rand(T, B, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    zeros = torch.zeros(n, dtype=torch.float64)
    return z, SQSParams(zeros, zeros.clone(), zeros.clone()), torch.ones(T, B, n, dtype=torch.float64)


def test_impossible_observed_spikes_leave_finite_states_and_are_counted() -> None:
    z, params, spikes = _impossible_case()
    # the plain Kraus update divides 0 by 0 on this train (what the robust readout guards against)
    naive = next_state(z[0], initial_state(3, 2), params, "quantum", spikes[0])
    assert torch.isnan(naive.bloch_z).all()
    path = follow_observed(z, params, "quantum", spikes)
    assert path.impossible == spikes.numel()
    for field in (*path.state, path.probs):
        assert torch.isfinite(field).all()
    # the memory follows the certain outcome (no spike from |0> with every angle 0): it stays |0>
    torch.testing.assert_close(path.state.bloch_z, torch.ones_like(path.state.bloch_z))
    assert torch.equal(predict_from_output(spikes, path.probs), torch.zeros(3, dtype=torch.long))


def test_local_update_on_an_impossible_spike_train_stays_finite() -> None:
    net = SQSNetwork(NetworkConfig(sizes=[5, 3, 2], mode="quantum", direct=True, seed=0))
    with torch.no_grad():
        for layer in net.layers:
            assert isinstance(layer, SQSLayer)
            layer.weight.fill_(-1.0)  # z <= 0 for every input: p = 0 with all angles 0
            if layer.direct_weight is not None:
                layer.direct_weight.fill_(-1.0)
            for angle in layer.params():
                angle.zero_()

    def always(z: torch.Tensor, params: SQSParams, mode: str) -> torch.Tensor:
        return torch.ones_like(z)

    tally = ReadoutTally()
    gen = torch.Generator().manual_seed(0)
    rule = LocalRule(net, LocalConfig(estimator="chain", shots=20), gen, spikes=always, readout=tally)
    x = (torch.rand(4, 6, 5, generator=gen, dtype=torch.float64) < 0.5).double()
    grads, traces, signal = rule.gradients(x, torch.tensor([0, 1, 0, 1, 0, 1]))
    assert tally.impossible == tally.observed == 4 * 6 * (3 + 2)
    for g in grads:
        assert all(torch.isfinite(v).all() for v in g)
    assert torch.isfinite(signal).all() and all(torch.isfinite(t.probs).all() for t in traces)


def _digits(limit_train: int | None = None) -> Dataset:
    return load_dataset("digits", classes=[0, 1], limit_train=limit_train, val_fraction=0.0)


def test_estimate_equals_the_metered_spend_and_the_budget_stops_before_a_submission() -> None:
    data = _digits(limit_train=40)
    cfg = LocalConfig(estimator="shift", epochs=3, batch_size=16, T=3, shots=8, directions=2, seed=0)
    net = SQSNetwork(NetworkConfig(sizes=[64, 4, 2], mode="quantum", direct=True, seed=0))
    backend = ExactBackend()
    est = estimate_training(net.config.sizes, cfg, 40, backend, direct=True)
    # 3 batches (16, 16, 8) x 2 layers x (1 forward + 3 probability submissions)
    assert (est.batches, est.per_epoch.submissions) == (3, 24)
    forward = sum(b * 1 for b in (16, 16, 8)) * 2  # one shot per run and layer
    assert est.per_epoch.shots == forward + sum(b * 3 * 8 * (1 + 6 + 4) for b in (16, 16, 8)) * 2
    budget = Budget(max_shots=est.per_epoch.shots + est.per_epoch.shots // 2)  # 1.5 epochs
    hw = backend_training(backend, cfg, "quantum", policy=RunPolicy(budget=budget), seed=1)
    saved: list[Checkpoint] = []

    def keep(m: EpochMetrics, ckpt: Checkpoint) -> None:
        assert hw.meter.reading() == est.per_epoch  # the estimate is what one epoch spends
        saved.append(ckpt)

    with pytest.raises(BudgetExceeded, match=r"max_shots=\d+ exhausted: \d+ shots spent in \d+ submissions"):
        train_local(net, data, cfg, on_epoch=keep, **hw.hooks())
    assert [c.epoch for c in saved] == [1]
    assert est.per_epoch.shots < hw.meter.spent.shots <= budget.max_shots  # type: ignore[operator]


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_backend_evaluation_is_priced_and_refused_whole_when_the_budget_is_short() -> None:
    data = _digits(limit_train=8)
    net = SQSNetwork(NetworkConfig(sizes=[64, 4, 2], mode="quantum", direct=True, seed=0))
    cfg = LocalConfig(estimator="exact", epochs=1, T=3)
    n_test = len(data.y_test)
    evaluation = estimate_training(net.config.sizes, cfg, 8, ExactBackend(), n_test=n_test).evaluation
    assert evaluation.shots == 2 * n_test and evaluation.submissions == 2  # one shot per sample and layer
    hw = backend_training("exact", cfg, "quantum", policy=RunPolicy(budget=Budget(max_shots=2 * n_test)))
    ev = backend_accuracy(hw, net, data.x_test, data.y_test, data.kind, T=3, p_max=0.5, generator=_gen())
    assert hw.meter.reading() == evaluation and ev.samples == n_test
    with pytest.raises(BudgetExceeded, match="test evaluation"):  # the budget is spent: nothing more runs
        backend_accuracy(hw, net, data.x_test, data.y_test, data.kind, T=3, p_max=0.5, generator=_gen())
    assert hw.meter.reading() == evaluation


def test_budget_counts_what_earlier_attempts_spent() -> None:
    cfg = LocalConfig(estimator="exact", epochs=1, batch_size=8, T=2)
    hw = backend_training("exact", cfg, "quantum", policy=RunPolicy(budget=Budget(max_shots=10)), spent=Spend(shots=9))
    with pytest.raises(BudgetExceeded, match="9 shots spent"):
        hw.spikes(torch.zeros(2, 4, 3, dtype=torch.float64), _params(3, 0), "quantum")


def test_official_mode_and_missing_shots_are_refused_on_circuit_backends() -> None:
    with pytest.raises(ValueError, match="memory mode 'official'"):
        backend_training("aer", LocalConfig(estimator="chain", shots=10), "official")
    with pytest.raises(ValueError, match="shots must be >= 1"):
        backend_training("aer", LocalConfig(estimator="chain"), "quantum")


# Chosen on a validation part of the training split (bench/hardware_train.py --select: 216 training / 72
# validation images, 3 epochs on aer: chain 16 shots lr 0.01 0.972, chain 32 shots lr 0.01 0.986, shift 32
# shots lr 0.01 0.958, chain 32 shots lr 0.03 1.000).
AER_CONFIG = LocalConfig(estimator="chain", epochs=3, batch_size=16, T=5, shots=32, lr=0.03, seed=0)


def test_local_rule_on_aer_with_shot_estimates_learns_digits_zero_vs_one() -> None:
    data = _digits()
    net = SQSNetwork(NetworkConfig(sizes=[64, 8, 2], mode="quantum", direct=True, seed=0))
    hw = backend_training("aer", AER_CONFIG, "quantum", seed=0)
    result = train_local(net, data, AER_CONFIG, **hw.hooks())
    assert result.test_accuracy >= 0.90, result.metrics
    on_aer = backend_accuracy(hw, net, data.x_test, data.y_test, data.kind, T=5, p_max=0.5, generator=_gen(), seed=1)
    assert on_aer.accuracy >= 0.90 and on_aer.samples == len(data.y_test)
    n_train, n_test = len(data.y_train), len(data.y_test)
    est = estimate_training(net.config.sizes, AER_CONFIG, n_train, hw.backend, direct=True, n_test=n_test)
    assert hw.meter.reading() == est.total
    assert hw.readout.impossible == on_aer.impossible_spikes == 0  # an ideal simulator never reports those


def test_local_rule_on_aer_noisy_completes_with_finite_updates_and_counts_impossible_outcomes() -> None:
    data = _digits(limit_train=48)
    batch = len(data.y_train)  # one batch: every hidden spike of it is forbidden (below)
    cfg = LocalConfig(estimator="chain", epochs=1, batch_size=batch, T=4, shots=8, lr=0.01, seed=0)
    net = SQSNetwork(NetworkConfig(sizes=[64, 4, 2], mode="quantum", direct=True, seed=0))
    with torch.no_grad():  # hidden neurons cannot spike (z <= 0, all angles 0): any spike is a device error
        hidden = net.layers[0]
        assert isinstance(hidden, SQSLayer)
        hidden.weight.fill_(-1.0)
        for angle in hidden.params():
            angle.zero_()
    hw = backend_training(get_backend("aer-noisy:fake_kingston"), cfg, "quantum", seed=0)
    result = train_local(net, data, cfg, **hw.hooks())
    assert 0.0 <= result.test_accuracy <= 1.0
    assert hw.readout.impossible > 0, hw.readout
    assert all(torch.isfinite(p).all() for p in net.parameters())
    on_device = backend_accuracy(hw, net, data.x_test, data.y_test, data.kind, T=4, p_max=0.5, generator=_gen())
    assert 0.0 <= on_device.accuracy <= 1.0 and on_device.observed_spikes == len(data.y_test) * 4 * (4 + 2)
