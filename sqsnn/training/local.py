r"""The paper's local learning rule for SQSNNs (``sqs-model.md`` §4.2): no backpropagation across layers.

Per mini-batch (every sample repeated M times, each repeat an independent single-shot run):

1. Run the network forward layer by layer with sampled spikes, recording every layer's presynaptic vector,
   the memory state entering each step and the emitted spikes (:func:`record_forward`).
2. Output neuron o ascends :math:`\sum_t \log p(y_{o,t})` with target :math:`y_{o,t} = 1[o = \text{label}]`
   at every step, evaluated in the state its own (sampled) trajectory left it in.
3. Every hidden neuron h ascends :math:`\sum_t (l_t - \bar l_t) \log p(s_{h,t})` of the spikes it emitted,
   where :math:`l_t = \sum_o \log p(y_{o,t})` is one scalar per sample and step broadcast to all hidden
   neurons and :math:`\bar l_t` a running baseline (exponential average with ``baseline_decay``).
4. Each term's gradient comes from the selected estimator (:mod:`sqsnn.training.estimators`); the
   estimates are averaged over the batch, clipped elementwise, and applied by SGD or Adam (ascent) with
   learning rate ``lr`` for the last layer and ``lr * hidden_lr_scale`` for hidden layers. Angles are
   wrapped into [0, 2 pi) (every probability is 2 pi-periodic in each angle).

Estimator ``official`` follows the reference code (``LocalConfig.reference()`` sets all its constants): no
baseline, SGD, clipping ±0.05 (output weights and angles), ±0.025 (hidden weights), ±0.02 (hidden angles),
lr 0.02 with hidden rate halved, K = 5, c = 0.03, batch 1, and :func:`reference_initialise`. With a batch
larger than 1 (not in the reference) the per-sample estimates are averaged before clipping. As in the
reference, output neurons run freely in the forward pass (their memory follows their own sampled spikes)
and the learning signal uses those probabilities; that holds for every estimator here.

Nothing crosses a layer: the only quantities shared between layers are the forward spikes and the scalar
learning signal. Everything is vectorised over samples, neurons and time.

Hardware in the loop (``spikes`` and ``probability`` given, e.g. by ``backends.training``): step 1's spikes
come single-shot from the :class:`~sqsnn.training.observed.SpikeSource`, one call per layer and batch; the
next layer's currents are computed classically from the observed spikes, and the recorded memory states and
probabilities are the ideal model's along the observed history (:func:`sqsnn.training.observed.follow_observed`,
which also counts outcomes the model forbids). The updates are then exactly those above, with every
probability the estimators need coming from ``probability``. Approximations: the recorded memory state is
the ideal one given the observed spikes, not the device's own (noisy) memory qubit; the learning signal
:math:`l_t` and the training loss use the ideal output probabilities along the observed output spikes
(computed classically, not measured).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from sqsnn.datasets import Dataset
from sqsnn.network import SQSLayer, SQSNetwork, predict_from_output
from sqsnn.neuron import SQSParams, SQSState, sqs_layer_trace
from sqsnn.training.estimators import (
    LayerGradient,
    LocalObjective,
    ProbabilityFn,
    ShotProbability,
    chain_weight_gradient,
    draw_signs,
    exact_gradient,
    exact_probability,
    log_prob,
    official_gradient,
    shift_angle_gradient,
    spsa_weight_gradient,
)
from sqsnn.training.loop import SCHEDULES, LoopSettings, Schedule, run_epochs, scheduled_rate, set_rate
from sqsnn.training.observed import ReadoutTally, SpikeSource, follow_observed
from sqsnn.training.results import Checkpoint, EpochMetrics, TrainResult

Estimator = Literal["exact", "shift", "chain", "official"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
Optimizer = Literal["sgd", "adam"]


@dataclass
class LocalConfig:
    """Settings of the local rule.

    Attributes:
        estimator: ``exact``, ``shift`` (parameter shift + SPSA), ``chain`` (parameter shift + chain rule)
            or ``official`` (the reference recipe).
        epochs, batch_size, T, p_max, seed, eval_batch_size, eval_runs: as in :class:`sqsnn.training.bptt.TrainConfig`.
        lr: learning rate of the last layer; hidden layers use ``lr * hidden_lr_scale``.
        schedule: ``constant`` or ``cosine`` (both rates decay to 0 over all epochs' batches), as in
            :class:`sqsnn.training.bptt.TrainConfig`.
        optimizer: ``sgd`` or ``adam`` (applied to the ascent direction).
        samples: M, independent forward runs per training sample.
        directions: K, SPSA directions per estimate.
        spsa_step: c, SPSA perturbation size.
        shots: S, shots per probability estimate (0: exact probabilities).
        clip_output_weight, clip_hidden_weight, clip_output_angle, clip_hidden_angle: elementwise bound on
            the averaged gradient estimate before the step (None: no clipping).
        baseline_decay: decay of the running baseline of the learning signal (None: no baseline).
        init: ``network`` (keep the network's initialisation) or ``reference`` (:func:`reference_initialise`).
    """

    estimator: Estimator = "exact"
    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.01
    hidden_lr_scale: float = 1.0
    schedule: Schedule = "constant"
    optimizer: Optimizer = "adam"
    samples: int = 1
    directions: int = 5
    spsa_step: float = 0.03
    shots: int = 0
    clip_output_weight: float | None = None
    clip_hidden_weight: float | None = None
    clip_output_angle: float | None = None
    clip_hidden_angle: float | None = None
    baseline_decay: float | None = 0.9
    init: Literal["network", "reference"] = "network"
    T: int = 5
    p_max: float = 0.5
    seed: int = 0
    eval_batch_size: int = 500
    eval_runs: int = 1

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be 'constant' or 'cosine'; got {self.schedule!r}")
        if self.init not in ("network", "reference"):
            raise ValueError(f"init must be 'network' or 'reference'; got {self.init!r}")
        for name in ("epochs", "batch_size", "samples", "directions", "T", "eval_batch_size", "eval_runs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.shots < 0:
            raise ValueError(f"shots must be >= 0 (0 means exact probabilities); got {self.shots}")
        if self.lr <= 0 or self.hidden_lr_scale < 0 or self.spsa_step <= 0:
            raise ValueError("lr and spsa_step must be > 0 and hidden_lr_scale >= 0")
        if self.baseline_decay is not None and not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1) or None; got {self.baseline_decay}")
        if not 0 < self.p_max <= 1:
            raise ValueError(f"p_max must be in (0, 1]; got {self.p_max}")

    @classmethod
    def reference(cls, **overrides: Any) -> LocalConfig:
        """The reference code's constants (estimator ``official``), with optional overrides."""
        values: dict[str, Any] = {
            "estimator": "official",
            "batch_size": 1,
            "lr": 0.02,
            "hidden_lr_scale": 0.5,
            "optimizer": "sgd",
            "samples": 1,
            "directions": 5,
            "spsa_step": 0.03,
            "clip_output_weight": 0.05,
            "clip_hidden_weight": 0.025,
            "clip_output_angle": 0.05,
            "clip_hidden_angle": 0.02,
            "baseline_decay": None,
            "init": "reference",
            "T": 10,
        }
        values.update(overrides)
        return cls(**values)


class LayerTrace(NamedTuple):
    """What one layer's local update needs from a forward run (``T, B, n, P`` as in the estimators)."""

    inputs: Tensor  # presynaptic vector u (T, B, P): layer below | ones (bias) | direct input
    groups: tuple[slice, slice]  # columns of u: (layer below + bias, direct input)
    state: SQSState  # memory entering each step, fields (T, B, n)
    spikes: Tensor  # (T, B, n)
    probs: Tensor  # (T, B, n)


def presynaptic(layer: SQSLayer, below: Tensor, direct: Tensor) -> tuple[Tensor, tuple[slice, slice]]:
    """Presynaptic vector ``(T, B, P)`` of ``layer`` and its column groups (see :class:`LayerTrace`)."""
    parts = [below]
    if layer.bias is not None:
        parts.append(torch.ones_like(below[..., :1]))
    split = sum(p.shape[-1] for p in parts)
    if layer.direct_weight is not None:
        parts.append(direct)
    u = torch.cat(parts, dim=-1)
    return u, (slice(0, split), slice(split, u.shape[-1]))


def full_weight(layer: SQSLayer) -> Tensor:
    """The layer's synapses as one ``(n, P)`` matrix matching :func:`presynaptic`'s columns."""
    parts: list[Tensor] = [layer.weight]
    if layer.bias is not None:
        parts.append(layer.bias[:, None])
    if layer.direct_weight is not None:
        parts.append(layer.direct_weight)
    return torch.cat(parts, dim=1)


@torch.no_grad()
def record_forward(
    net: SQSNetwork,
    x: Tensor,
    generator: torch.Generator,
    spikes: SpikeSource | None = None,
    readout: ReadoutTally | None = None,
) -> list[LayerTrace]:
    """Single-shot forward run of ``net`` on input spikes ``x (T, B, D)``, recording every layer.

    Without ``spikes`` the exact engine samples every step from ``generator``. With ``spikes``, each layer's
    spikes come from that source (one call per layer) and states and probabilities follow the observed
    spikes (:func:`~sqsnn.training.observed.follow_observed`); impossible outcomes are added to ``readout``.
    """
    mode = net.config.mode
    traces: list[LayerTrace] = []
    below = x
    for layer in net.layers:
        assert isinstance(layer, SQSLayer)
        u, groups = presynaptic(layer, below, x)
        z = layer.currents(below, x if layer.direct_weight is not None else None)
        if spikes is not None:
            params = SQSParams(*(a.detach() for a in layer.params()))
            observed = spikes(z, params, mode).to(z.dtype)
            path = follow_observed(z, params, mode, observed)
            if readout is not None:
                readout.add(path.impossible, observed.numel())
            traces.append(LayerTrace(u, groups, path.state, observed, path.probs))
            below = observed
            continue
        sampled, probs, stacked = sqs_layer_trace(z, layer.params(), mode, generator)
        traces.append(LayerTrace(u, groups, stacked, sampled, probs))
        below = sampled
    return traces


def output_log_likelihood(probs: Tensor, targets: Tensor) -> Tensor:
    """Learning signal :math:`l_t = \\sum_o \\log p(y_{o,t})`: ``(T, B, C) -> (T, B)``."""
    return log_prob(probs, targets).sum(dim=-1)


def reference_initialise(net: SQSNetwork, generator: torch.Generator) -> None:
    """The reference code's initialisation, in place.

    Every angle is one of (pi/4, pi/3, pi/2, 2 pi/3) chosen uniformly, plus uniform noise in ±0.05; output
    neuron 1 gets ``theta_mem + pi``. Each weight matrix is uniform in ±1/sqrt(its fan-in); output neuron 1's
    incoming weights (from the hidden layer and direct) are negated. Biases are zeroed.
    """
    bases = torch.tensor([math.pi / 4, math.pi / 3, math.pi / 2, 2 * math.pi / 3], dtype=torch.float64)
    with torch.no_grad():
        for index, layer in enumerate(net.layers):
            assert isinstance(layer, SQSLayer)
            for angle in layer.params():
                pick = torch.randint(0, 4, angle.shape, generator=generator)
                noise = torch.rand(angle.shape, generator=generator, dtype=angle.dtype) * 2 - 1
                angle.copy_(bases[pick] + 0.05 * noise)
            for w in (layer.weight, layer.direct_weight):
                if w is not None:
                    bound = 1.0 / math.sqrt(w.shape[1])
                    w.copy_((torch.rand(w.shape, generator=generator, dtype=w.dtype) * 2 - 1) * bound)
            if layer.bias is not None:
                layer.bias.zero_()
            if index == len(net.layers) - 1 and layer.weight.shape[0] > 1:
                layer.theta_mem[1] += math.pi
                layer.weight[1] *= -1
                if layer.direct_weight is not None:
                    layer.direct_weight[1] *= -1


class StepStats(NamedTuple):
    """Per-batch figures of one local update."""

    loss: float  # output negative log-likelihood per step, mean over samples
    correct: int  # samples (of the M * B runs) whose forward run predicted the label


class LocalRule:
    """Applies the local rule to an :class:`~sqsnn.network.SQSNetwork` (see module docstring).

    ``probability`` replaces the default probability evaluator of the ``shift``, ``chain`` and ``official``
    estimators (e.g. a backend running the shifted/perturbed circuits with S shots); ``spikes`` replaces the
    exact engine in the forward pass (see the module docstring). ``readout`` counts the observed outcomes
    and those the ideal model forbids.
    """

    def __init__(
        self,
        net: SQSNetwork,
        config: LocalConfig,
        generator: torch.Generator,
        *,
        probability: ProbabilityFn | None = None,
        spikes: SpikeSource | None = None,
        readout: ReadoutTally | None = None,
    ) -> None:
        self.net = net
        self.config = config
        self.generator = generator
        self.spikes = spikes
        self.readout = readout if readout is not None else ReadoutTally()
        if probability is not None:
            self.probability: ProbabilityFn = probability
        elif config.shots > 0:
            self.probability = ShotProbability(config.shots, generator)
        else:
            self.probability = exact_probability
        last = len(net.layers) - 1
        groups = []
        for index, layer in enumerate(net.layers):
            assert isinstance(layer, SQSLayer)
            scale = 1.0 if index == last else config.hidden_lr_scale
            weights = [p for p in (layer.weight, layer.bias, layer.direct_weight) if p is not None]
            groups.append({"params": weights, "lr": config.lr * scale, "lr_scale": scale})
            groups.append({"params": list(layer.params()), "lr": config.lr * scale, "lr_scale": scale})
        optim_cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
        self.optimizer = optim_cls(groups, lr=config.lr)
        self.baseline: Tensor | None = None  # (T,) running mean of the learning signal

    def state_dict(self) -> dict[str, Any]:
        """A detached copy of the optimizer and baseline state (for checkpoints)."""
        return copy.deepcopy({"optimizer": self.optimizer.state_dict(), "baseline": self.baseline})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]

    def gradients(self, x: Tensor, y: Tensor) -> tuple[list[LayerGradient], list[LayerTrace], Tensor]:
        """Local gradient estimates (ascent directions, batch-averaged) of every layer.

        Args:
            x: input spikes ``(T, B, D)``; y: labels ``(B,)``. Each sample is run ``samples`` times.

        Returns:
            ``(gradients per layer, traces, learning signal l (T, M*B))``.
        """
        cfg = self.config
        m = cfg.samples
        x = x.repeat(1, m, 1)
        y = y.repeat(m)
        traces = record_forward(self.net, x, self.generator, self.spikes, self.readout)
        out = traces[-1]
        n_runs = x.shape[1]
        targets = torch.nn.functional.one_hot(y, out.spikes.shape[-1]).to(out.probs.dtype)
        targets = targets.expand_as(out.spikes)
        signal = output_log_likelihood(out.probs, targets)  # (T, B)
        centred = signal
        if cfg.estimator != "official" and cfg.baseline_decay is not None:
            batch_mean = signal.mean(dim=1)
            if self.baseline is None:
                self.baseline = batch_mean
            centred = signal - self.baseline[:, None]
            self.baseline = cfg.baseline_decay * self.baseline + (1 - cfg.baseline_decay) * batch_mean
        grads = []
        for index, (layer, trace) in enumerate(zip(self.net.layers, traces, strict=True)):
            assert isinstance(layer, SQSLayer)
            if index == len(traces) - 1:
                obj = LocalObjective(trace.inputs, trace.state, targets, torch.full_like(targets, 1.0 / n_runs))
            else:
                obj = LocalObjective(trace.inputs, trace.state, trace.spikes, (centred / n_runs)[..., None])
            grads.append(self._estimate(layer, trace, obj))
        return grads, traces, signal

    def _estimate(self, layer: SQSLayer, trace: LayerTrace, obj: LocalObjective) -> LayerGradient:
        cfg = self.config
        mode = self.net.config.mode
        with torch.no_grad():
            weight = full_weight(layer)
            params = SQSParams(*(a.detach() for a in layer.params()))
            if cfg.estimator == "exact":
                return exact_gradient(obj, weight, params, mode)
            if cfg.estimator == "official":
                t_steps, batch, n = obj.targets.shape
                directions = [
                    draw_signs((cfg.directions, t_steps, batch, n, g.stop - g.start), self.generator)
                    for g in trace.groups
                ]
                return official_gradient(
                    obj, weight, params, mode, self.probability, trace.groups, directions, cfg.spsa_step
                )
            shift = shift_angle_gradient(obj, weight, params, mode, self.probability)
            if cfg.estimator == "chain":
                grad_w = chain_weight_gradient(obj, weight, shift.weighted_dp_dtheta_in)
            else:
                signs = draw_signs((cfg.directions, *weight.shape), self.generator)
                grad_w = spsa_weight_gradient(obj, weight, params, mode, self.probability, signs, cfg.spsa_step)
            return LayerGradient(grad_w, shift.theta_ent, shift.theta_mem, shift.theta_in)

    def apply(self, grads: list[LayerGradient]) -> None:
        """Clip the estimates, take one ascent step and wrap the angles into [0, 2 pi)."""
        cfg = self.config
        last = len(grads) - 1
        for index, (layer, g) in enumerate(zip(self.net.layers, grads, strict=True)):
            assert isinstance(layer, SQSLayer)
            clip_w = cfg.clip_output_weight if index == last else cfg.clip_hidden_weight
            clip_a = cfg.clip_output_angle if index == last else cfg.clip_hidden_angle
            w = g.weight if clip_w is None else g.weight.clamp(-clip_w, clip_w)
            n_in = layer.weight.shape[1]
            layer.weight.grad = -w[:, :n_in].clone()
            col = n_in
            if layer.bias is not None:
                layer.bias.grad = -w[:, col].clone()
                col += 1
            if layer.direct_weight is not None:
                layer.direct_weight.grad = -w[:, col:].clone()
            for param, est in zip(layer.params(), (g.theta_ent, g.theta_mem, g.theta_in), strict=True):
                param.grad = -(est if clip_a is None else est.clamp(-clip_a, clip_a)).clone()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for layer in self.net.layers:
                assert isinstance(layer, SQSLayer)
                for angle in layer.params():
                    angle.copy_(torch.remainder(angle, 2 * math.pi))

    def step(self, x: Tensor, y: Tensor) -> StepStats:
        """One local update from input spikes ``x (T, B, D)`` and labels ``y (B,)``."""
        grads, traces, signal = self.gradients(x, y)
        self.apply(grads)
        out = traces[-1]
        y_rep = y.repeat(self.config.samples)
        correct = int((predict_from_output(out.spikes, out.probs) == y_rep).sum())
        return StepStats(loss=float(-signal.mean(dim=1).sum()) / signal.shape[0], correct=correct)


def train_local(
    net: SQSNetwork,
    data: Dataset,
    config: LocalConfig,
    *,
    resume: Checkpoint | None = None,
    on_epoch: Callable[[EpochMetrics, Checkpoint], None] | None = None,
    on_batch: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    probability: ProbabilityFn | None = None,
    spikes: SpikeSource | None = None,
    readout: ReadoutTally | None = None,
) -> TrainResult:
    """Train ``net`` on ``data`` with the local rule; same callbacks and results as ``bptt.train``.

    ``train_loss`` is the output negative log-likelihood per step; ``train_accuracy`` counts the forward
    runs of all M repeats. ``Checkpoint.optimizer_state`` holds :meth:`LocalRule.state_dict`.
    ``probability``, ``spikes`` and ``readout`` are :class:`LocalRule`'s (hardware in the loop). The test
    accuracy after each epoch is the exact engine's on the trained parameters.
    """
    gen = torch.Generator().manual_seed(config.seed)
    if resume is None and config.init == "reference":
        reference_initialise(net, gen)
    rule = LocalRule(net, config, gen, probability=probability, spikes=spikes, readout=readout)
    settings = LoopSettings.of(config, runs_per_sample=config.samples)
    return run_epochs(
        net,
        data,
        settings,
        _RuleLearner(rule),
        gen,
        resume=resume,
        on_epoch=on_epoch,
        on_batch=on_batch,
        should_stop=should_stop,
    )


class _RuleLearner:
    """The local rule as the epoch loop's learner, applying the configured learning-rate schedule."""

    def __init__(self, rule: LocalRule) -> None:
        self.rule = rule

    def step(self, x: Tensor, y: Tensor, progress: float) -> tuple[float, int]:
        cfg = self.rule.config
        set_rate(self.rule.optimizer, scheduled_rate(cfg.lr, cfg.schedule, progress))
        stats = self.rule.step(x, y)
        return stats.loss, stats.correct

    def state_dict(self) -> dict[str, Any]:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state)
