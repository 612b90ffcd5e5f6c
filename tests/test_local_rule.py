"""The local learning rule and its estimators against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import sqsnn.training.local as local_module
from sqsnn.datasets import load_dataset
from sqsnn.encoders import encode
from sqsnn.network import NetworkConfig, SQSLayer, SQSNetwork
from sqsnn.neuron import MemoryMode, SQSParams, SQSState, spike_probability
from sqsnn.training.bptt import Checkpoint, EpochMetrics
from sqsnn.training.estimators import (
    LocalObjective,
    ShotProbability,
    chain_weight_gradient,
    exact_gradient,
    exact_probability,
    shift_angle_gradient,
    spsa_weight_gradient,
)
from sqsnn.training.local import (
    LocalConfig,
    LocalRule,
    _RuleLearner,
    full_weight,
    presynaptic,
    record_forward,
    train_local,
)

MODES: tuple[MemoryMode, ...] = ("quantum", "memoryless", "official")


def _objective(mode: MemoryMode, seed: int = 0) -> tuple[LocalObjective, torch.Tensor, SQSParams]:
    """A recorded hidden-layer objective of a small network with bias and direct synapses."""
    net = SQSNetwork(NetworkConfig(sizes=[6, 4, 3], mode=mode, bias=True, direct=True, weight_scale=1.5, seed=seed))
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(5, 4, 6, generator=gen, dtype=torch.float64) < 0.5).double()
    traces = record_forward(net, x, gen)
    layer = net.layers[1]
    assert isinstance(layer, SQSLayer)
    trace = traces[1]
    coef = torch.randn(5, 4, 1, generator=gen, dtype=torch.float64)
    obj = LocalObjective(trace.inputs, trace.state, trace.spikes, coef)
    params = SQSParams(*(a.detach() for a in layer.params()))
    return obj, full_weight(layer).detach(), params


@pytest.mark.parametrize("mode", MODES)
def test_record_forward_is_consistent_with_the_network(mode: MemoryMode) -> None:
    net = SQSNetwork(NetworkConfig(sizes=[6, 4, 3], mode=mode, bias=True, direct=True, seed=1))
    with torch.no_grad():
        for layer in net.layers:
            layer.bias.uniform_(-0.3, 0.3)
    gen = torch.Generator().manual_seed(2)
    x = (torch.rand(5, 4, 6, generator=gen, dtype=torch.float64) < 0.5).double()
    traces = record_forward(net, x, gen)
    below = x
    for layer, trace in zip(net.layers, traces, strict=True):
        z = layer.currents(below, x if layer.direct_weight is not None else None).detach()
        u, _ = presynaptic(layer, below, x)
        torch.testing.assert_close(u @ full_weight(layer).detach().T, z, rtol=0, atol=1e-12)
        p = spike_probability(z, trace.state, layer.params(), mode).detach()
        torch.testing.assert_close(p, trace.probs, rtol=0, atol=1e-12)
        below = trace.spikes


@pytest.mark.parametrize("mode", MODES)
def test_parameter_shift_with_exact_probabilities_equals_exact_gradient(mode: MemoryMode) -> None:
    obj, weight, params = _objective(mode)
    exact = exact_gradient(obj, weight, params, mode)
    shift = shift_angle_gradient(obj, weight, params, mode, exact_probability)
    for name in ("theta_ent", "theta_mem", "theta_in"):
        np.testing.assert_allclose(getattr(shift, name), getattr(exact, name), rtol=0, atol=1e-8)
    assert exact.theta_in.abs().max() > 1e-3, "the comparison must involve non-trivial gradients"


@pytest.mark.parametrize("mode", MODES)
def test_chain_rule_weight_gradient_equals_autograd(mode: MemoryMode) -> None:
    obj, weight, params = _objective(mode, seed=3)
    exact = exact_gradient(obj, weight, params, mode)
    shift = shift_angle_gradient(obj, weight, params, mode, exact_probability)
    chain = chain_weight_gradient(obj, weight, shift.weighted_dp_dtheta_in)
    np.testing.assert_allclose(chain, exact.weight, rtol=0, atol=1e-10)
    assert exact.weight.abs().max() > 1e-3


def test_spsa_mean_converges_to_the_exact_weight_gradient() -> None:
    # Per direction, component q of the estimate is G_q + sum_{j != q} D_q D_j G_j + O(c^2): mean G_q and
    # variance sum_{j != q} G_j^2. With K directions the mean is within 5 sigma_q = 5 sqrt(var / K) of G_q
    # except with probability < 6e-7 per component (CLT); c = 1e-5 makes the O(c^2) bias negligible.
    mode: MemoryMode = "quantum"
    obj, weight, params = _objective(mode, seed=4)
    exact = exact_gradient(obj, weight, params, mode).weight
    k = 40_000
    signs = torch.randint(0, 2, (k, *weight.shape), generator=torch.Generator().manual_seed(9)).double() * 2 - 1
    est = spsa_weight_gradient(obj, weight, params, mode, exact_probability, signs, 1e-5)
    var = (exact**2).sum(dim=1, keepdim=True) - exact**2
    sigma = torch.sqrt(var / k)
    z_scores = ((est - exact) / sigma).abs()
    assert z_scores.max() < 5.0, z_scores
    assert (sigma < 0.05 * exact.abs().max()).all(), "the bound must be tight enough to mean something"


def test_shot_probability_is_binomial() -> None:
    shots, n = 20, 4000
    p_true = 0.3
    gen = torch.Generator().manual_seed(0)
    est = ShotProbability(shots, gen)
    z = torch.full((n, 1, 1), 2 * math.asin(math.sqrt(p_true)) / math.pi)  # phi = 2 asin(sqrt p) => sin^2 = p
    state = SQSState(torch.zeros(1, 1), torch.ones(1, 1), torch.zeros(1, 1))
    params = SQSParams(torch.zeros(1), torch.zeros(1), torch.zeros(1))
    counts = (est(z.double(), state, params, "quantum") * shots).round().long().flatten()
    observed = np.bincount(counts.numpy(), minlength=shots + 1)
    expected = stats.binom.pmf(np.arange(shots + 1), shots, p_true) * n
    keep = expected > 5
    observed_kept = np.append(observed[keep], observed[~keep].sum())
    expected_kept = np.append(expected[keep], expected[~keep].sum())
    _, pvalue = stats.chisquare(observed_kept, expected_kept * observed_kept.sum() / expected_kept.sum())
    assert pvalue > 1e-3


def test_shot_probability_reports_certain_outcomes_within_half_a_shot() -> None:
    shots = 8
    est = ShotProbability(shots, torch.Generator().manual_seed(0))
    z = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)  # phi = 0 -> p = 0; phi = pi -> p = 1
    state = SQSState(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2))
    params = SQSParams(torch.zeros(2), torch.zeros(2), torch.zeros(2))
    p = est(z.double(), state, params, "quantum")
    assert p.flatten().tolist() == [1 / 16, 15 / 16]


def test_custom_probability_receives_all_variants_in_one_call() -> None:
    shapes: list[tuple[int, ...]] = []

    def recording(z: torch.Tensor, state: SQSState, params: SQSParams, mode: MemoryMode) -> torch.Tensor:
        shapes.append(tuple(torch.broadcast_shapes(z.shape, params.theta_in.shape)))
        return exact_probability(z, state, params, mode)

    obj, weight, params = _objective("quantum", seed=5)
    signs = torch.ones(7, *weight.shape, dtype=torch.float64)
    shift_angle_gradient(obj, weight, params, "quantum", recording)
    spsa_weight_gradient(obj, weight, params, "quantum", recording, signs, 0.01)
    t, b, n = obj.targets.shape
    assert shapes == [(t, b, n), (6, t, b, n), (14, t, b, n)]


def _log_p(p: float, s: float) -> float:
    p = min(max(p, 1e-10), 1 - 1e-10)
    return math.log(p) if s == 1 else math.log(1 - p)


def test_official_estimator_reproduces_a_hand_computed_reference_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One reference-recipe update of a 3-2-2 network with direct synapses, T = 3, computed by hand."""
    # every SPSA direction is +1, so the expected update needs no random numbers beyond the recorded spikes
    monkeypatch.setattr(local_module, "draw_signs", lambda shape, generator: torch.ones(tuple(shape)).double())
    net = SQSNetwork(NetworkConfig(sizes=[3, 2, 2], mode="official", direct=True, seed=0))
    config = LocalConfig.reference(T=3)
    gen = torch.Generator().manual_seed(11)
    local_module.reference_initialise(net, gen)
    before = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}
    x = torch.tensor([[[1.0, 0.0, 1.0]], [[1.0, 1.0, 0.0]], [[0.0, 1.0, 1.0]]], dtype=torch.float64)
    y = torch.tensor([1])
    rule = LocalRule(net, config, gen)
    grads, traces, _ = rule.gradients(x, y)
    rule.apply(grads)
    after = {k: v.detach().numpy() for k, v in net.state_dict().items()}

    c, lr, k_dirs = 0.03, 0.02, 5
    hid, out = traces[0].spikes[:, 0].numpy(), traces[1].probs[:, 0].numpy()
    xs = x[:, 0].numpy()
    w_ih, w_ho, w_io = before["layers.0.weight"], before["layers.1.weight"], before["layers.1.direct_weight"]

    def fresh_p(z: float, th_mem: float, th_in: float) -> float:
        return math.sin((math.pi * max(z, 0.0) + th_mem + th_in) / 2) ** 2

    def spsa(w: np.ndarray, inp: np.ndarray, s: float, th_mem: float, th_in: float) -> np.ndarray:
        zp, zm = float(np.dot(w + c, inp)), float(np.dot(w - c, inp))
        diff = _log_p(fresh_p(zp, th_mem, th_in), s) - _log_p(fresh_p(zm, th_mem, th_in), s)
        return np.full_like(w, k_dirs * diff / (2 * c) * c / k_dirs)  # K identical directions, c-scaled

    def shift(z: float, s: float, th: dict[str, float]) -> dict[str, float]:
        res = {}
        for name in ("ent", "mem", "in"):
            plus = dict(th, **{name: th[name] + math.pi / 2})
            minus = dict(th, **{name: th[name] - math.pi / 2})
            res[name] = 0.5 * (
                _log_p(fresh_p(z, plus["mem"], plus["in"]), s) - _log_p(fresh_p(z, minus["mem"], minus["in"]), s)
            )
        return res

    def angles(prefix: str, n: int) -> dict[str, float]:
        return {a: float(before[f"{prefix}.theta_{a}"][n]) for a in ("ent", "mem", "in")}

    g_ih, g_ho, g_io = np.zeros_like(w_ih), np.zeros_like(w_ho), np.zeros_like(w_io)
    g_th = {(layer, n): dict.fromkeys(("ent", "mem", "in"), 0.0) for layer in (0, 1) for n in (0, 1)}
    for t in range(3):
        l_t = sum(_log_p(float(out[t, o]), 1.0 if o == 1 else 0.0) for o in range(2))
        for o in range(2):
            target = 1.0 if o == 1 else 0.0
            th = angles("layers.1", o)
            g_ho[o] += spsa(w_ho[o], hid[t], target, th["mem"], th["in"])
            g_io[o] += spsa(w_io[o], xs[t], target, th["mem"], th["in"])
            z = float(np.dot(w_ho[o], hid[t]) + np.dot(w_io[o], xs[t]))
            for a, v in shift(z, target, th).items():
                g_th[(1, o)][a] += v
        for h in range(2):
            th = angles("layers.0", h)
            s = float(hid[t, h])
            g_ih[h] += l_t * spsa(w_ih[h], xs[t], s, th["mem"], th["in"])
            for a, v in shift(float(np.dot(w_ih[h], xs[t])), s, th).items():
                g_th[(0, h)][a] += l_t * v

    np.testing.assert_allclose(after["layers.1.weight"], w_ho + lr * np.clip(g_ho, -0.05, 0.05), atol=1e-12)
    np.testing.assert_allclose(after["layers.1.direct_weight"], w_io + lr * np.clip(g_io, -0.05, 0.05), atol=1e-12)
    np.testing.assert_allclose(after["layers.0.weight"], w_ih + lr * 0.5 * np.clip(g_ih, -0.025, 0.025), atol=1e-12)
    for (layer, n), g in g_th.items():
        bound, rate = (0.05, lr) if layer == 1 else (0.02, 0.5 * lr)
        for a, v in g.items():
            expect = (before[f"layers.{layer}.theta_{a}"][n] + rate * np.clip(v, -bound, bound)) % (2 * math.pi)
            assert after[f"layers.{layer}.theta_{a}"][n] == pytest.approx(expect, abs=1e-12)
    assert all(g["ent"] == 0.0 for g in g_th.values()), "a fresh neuron gives theta_ent no gradient"
    assert np.abs(g_ih).max() > 0 and np.abs(g_ho).max() > 0


def test_reference_config_and_validation() -> None:
    cfg = LocalConfig.reference()
    assert (cfg.estimator, cfg.lr, cfg.hidden_lr_scale, cfg.directions, cfg.spsa_step) == (
        "official",
        0.02,
        0.5,
        5,
        0.03,
    )
    assert (cfg.clip_output_weight, cfg.clip_hidden_weight, cfg.clip_hidden_angle) == (0.05, 0.025, 0.02)
    with pytest.raises(ValueError, match="unknown estimator"):
        LocalConfig(estimator="backprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shots"):
        LocalConfig(shots=-1)
    with pytest.raises(ValueError, match="baseline_decay"):
        LocalConfig(baseline_decay=1.5)


def test_the_cosine_schedule_sets_every_groups_rate_before_each_step() -> None:
    data = load_dataset("digits", classes=[0, 1], limit_train=48, limit_test=16, val_fraction=0.0)
    net = SQSNetwork(NetworkConfig(sizes=[64, 4, 2], mode="quantum", direct=True, seed=0))
    cfg = LocalConfig(epochs=2, batch_size=16, T=3, lr=0.01, hidden_lr_scale=0.5, schedule="cosine")
    rule = LocalRule(net, cfg, torch.Generator().manual_seed(0))
    learner = _RuleLearner(rule)
    x = encode(data.x_train[:16], data.kind, cfg.T, cfg.p_max, torch.Generator().manual_seed(1))
    seen = []
    for done in range(6):  # two epochs of three batches, as the epoch loop reports them
        learner.step(x, data.y_train[:16], done / 6)
        seen.append([group["lr"] for group in rule.optimizer.param_groups])
    for done, rates in enumerate(seen):
        expected = 0.005 * (1 + math.cos(math.pi * done / 6))  # 0.01 halfway down a cosine over 6 steps
        assert rates == pytest.approx([expected * 0.5] * 2 + [expected] * 2, rel=1e-12)
    with pytest.raises(ValueError, match="schedule"):
        LocalConfig(schedule="step")  # type: ignore[arg-type]


def test_the_epoch_loop_reports_each_steps_share_of_the_run_also_after_a_resume() -> None:
    from sqsnn.training.loop import LoopSettings, run_epochs

    data = load_dataset("digits", classes=[0, 1], limit_train=48, limit_test=16, val_fraction=0.0)
    net = SQSNetwork(NetworkConfig(sizes=[64, 4, 2], mode="quantum", direct=True, seed=0))
    settings = LoopSettings(epochs=2, batch_size=16, T=3, p_max=0.5, eval_batch_size=16)  # 3 batches an epoch

    class Recorder:
        def __init__(self) -> None:
            self.progress: list[float] = []

        def step(self, x: torch.Tensor, y: torch.Tensor, progress: float) -> tuple[float, int]:
            self.progress.append(progress)
            return 0.0, 0

        def state_dict(self) -> dict[str, object]:
            return {}

        def load_state_dict(self, state: dict[str, object]) -> None:
            pass

    saved: list[Checkpoint] = []
    full, resumed = Recorder(), Recorder()
    run_epochs(net, data, settings, full, torch.Generator().manual_seed(0), resume=None,
               on_epoch=lambda _, ckpt: saved.append(ckpt), on_batch=None, should_stop=None)  # fmt: skip
    run_epochs(net, data, settings, resumed, torch.Generator().manual_seed(0), resume=saved[0],
               on_epoch=None, on_batch=None, should_stop=None)  # fmt: skip
    assert full.progress == [done / 6 for done in range(6)]
    assert resumed.progress == [done / 6 for done in range(3, 6)]


def test_local_rule_trains_digits_zero_vs_one() -> None:
    data = load_dataset("digits", classes=[0, 1], val_fraction=0.0)  # the whole training side trains
    net = SQSNetwork(NetworkConfig(sizes=[64, 8, 2], mode="quantum", direct=True, seed=0))
    result = train_local(net, data, LocalConfig(estimator="exact", epochs=3, batch_size=16, T=5, seed=0))
    assert result.test_accuracy > 0.95, result.metrics


def test_local_training_resumes_from_a_checkpoint() -> None:
    data = load_dataset("digits", classes=[0, 1], limit_train=64, limit_test=32)
    cfg = LocalConfig(estimator="shift", epochs=2, batch_size=16, T=3, shots=10, seed=1, schedule="cosine")

    def fresh() -> SQSNetwork:
        return SQSNetwork(NetworkConfig(sizes=[64, 4, 2], mode="quantum", direct=True, seed=0))

    saved: list[Checkpoint] = []

    def keep(_: EpochMetrics, ckpt: Checkpoint) -> None:
        saved.append(ckpt)

    full = train_local(fresh(), data, cfg, on_epoch=keep)
    resumed = train_local(fresh(), data, cfg, resume=saved[0])
    held_out = [m.val_accuracy for m in full.metrics]  # the split evaluated every epoch
    assert all(a is not None for a in held_out)
    assert [m.val_accuracy for m in resumed.metrics] == held_out
    assert [m.train_loss for m in resumed.metrics] == [m.train_loss for m in full.metrics]
    assert resumed.test_accuracy == full.test_accuracy
