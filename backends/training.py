"""Hardware-in-the-loop local learning: the local rule (``sqsnn.training.local``) with every spike and every
probability it uses measured on a backend, metered against a budget.

Per mini-batch and layer: one single-shot submission for the forward spikes (:class:`BackendSpikes`; the
next layer's currents are computed classically from the observed spikes), then the estimator's probability
submissions (:class:`backends.shift.BackendProbability`, S shots per row, one submission per call):

* ``shift``: p (T B M rows), the 6 parameter-shifted variants (6 T B M rows) and the 2K SPSA perturbations
  of the weights (2K T B M rows). Approximation: SPSA's O(c^2) bias, plus shot noise.
* ``chain``: p and the 6 shifted variants; the weight gradient follows exactly by the chain rule.
  Approximation: shot noise only.
* ``official``: the 6 shifted variants and 2K perturbations per synapse group, every row from a fresh memory
  (the reference recipe, which ignores the memory state).
* ``exact``: none; the gradient is computed classically from the observed spikes (hardware forward only).

(B the batch, M ``samples``, K ``directions``.) Every estimator conditions on the memory state the ideal
model has along the observed spikes (``sqsnn.training.observed``), prepared as ``RX(alpha)|0>`` on the
memory qubit: it is exact for an ideal device and an approximation on a noisy one, whose memory qubit has
drifted from that state. Measured frequencies of 0 or S out of S are used as 1/(2S) and 1 - 1/(2S) (bias at
most half a shot; see :class:`~backends.shift.BackendProbability`). The learning signal uses the ideal output
probabilities along the observed spikes, and the test accuracy after each epoch is evaluated on the exact
engine (both classical: they cost no shots). :func:`backend_accuracy` measures the trained network's test
accuracy on the backend itself (single shot, layer by layer, metered like training).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor

from backends.base import BackendRefused, FallbackRecord
from backends.common import BaseBackend, derive_seed
from backends.estimate import estimate_network
from backends.execute import run_network
from backends.meter import Spend, SpendMeter
from backends.options import RunPolicy
from backends.registry import resolve
from backends.shift import BackendProbability
from sqsnn.encoders import DataKind, encode
from sqsnn.network import SQSNetwork
from sqsnn.neuron import MemoryMode, SQSParams
from sqsnn.training.local import LocalConfig
from sqsnn.training.observed import ReadoutTally


class BackendSpikes:
    """A :class:`~sqsnn.training.observed.SpikeSource`: one layer single-shot on ``backend`` per call (one
    submission: one PUB / program set), charged to ``meter`` before it is submitted."""

    def __init__(self, backend: BaseBackend, meter: SpendMeter | None = None, seed: int | None = None) -> None:
        self.backend = backend
        self.meter = meter
        self.seed = seed
        self.submissions = 0

    def __call__(self, z: Tensor, params: SQSParams, mode: MemoryMode) -> Tensor:
        steps, batch, n = z.shape
        if self.meter is not None:
            self.meter.charge(
                self.backend.estimate(n, steps, batch, 1), f"forward spikes of {n} neurons x {batch} runs"
            )
        result = self.backend.run_layer(z, params, shots=1, mode=mode, seed=derive_seed(self.seed, self.submissions))
        self.submissions += 1
        return torch.as_tensor(result.single_shot, dtype=z.dtype)


@dataclass
class BackendTraining:
    """What ``train_local`` needs to learn on ``backend``: its ``spikes`` and ``probability`` arguments (None
    for the ``exact`` estimator), the ``readout`` tally, and the ``meter`` that prices every submission."""

    backend: BaseBackend
    meter: SpendMeter
    spikes: BackendSpikes
    probability: BackendProbability | None
    readout: ReadoutTally
    fallback: FallbackRecord | None

    def hooks(self) -> dict[str, Any]:
        """``train_local`` keyword arguments."""
        return {"spikes": self.spikes, "probability": self.probability, "readout": self.readout}


def check_training(backend: BaseBackend, config: LocalConfig, mode: MemoryMode) -> None:
    """Refuse, naming the setting to change, a local-rule run ``backend`` cannot do."""
    modes = backend.capabilities().modes
    if mode not in modes:
        raise BackendRefused(
            f"{backend.name}: memory mode {mode!r} has no circuit here (supported: {', '.join(modes)})"
        )
    if config.estimator != "exact" and config.shots < 1:
        raise ValueError(
            f"shots must be >= 1 to train with estimator {config.estimator!r} on {backend.name}: its probabilities "
            "are measured there (fractions of `shots` runs)"
        )


def backend_training(
    backend: str | BaseBackend,
    config: LocalConfig,
    mode: MemoryMode,
    *,
    options: Mapping[str, Any] | BaseModel | None = None,
    policy: RunPolicy | None = None,
    seed: int | None = None,
    spent: Spend | None = None,
) -> BackendTraining:
    """Resolve ``backend`` (applying ``policy.fallback``), check the run, and build its metered hooks.

    ``spent`` is what earlier attempts of the same job already used: it counts against ``policy.budget``.
    Submissions are seeded from ``seed`` (spikes and probabilities from independent streams).
    """
    policy = policy or RunPolicy()
    if isinstance(backend, str):
        resolved = resolve(backend, options, policy)
        chosen, fallback = resolved.backend, resolved.fallback
    else:
        chosen, fallback = backend, None
    check_training(chosen, config, mode)
    meter = SpendMeter(policy.budget, spent or Spend())
    spikes = BackendSpikes(chosen, meter, derive_seed(seed, 0))
    probability = None
    if config.estimator != "exact":
        probability = BackendProbability(chosen, config.shots, derive_seed(seed, 1), meter)
    return BackendTraining(chosen, meter, spikes, probability, ReadoutTally(), fallback)


def probability_rows(config: LocalConfig, direct: bool) -> list[int]:
    """Variants per probability submission of one layer and batch (each times T B M rows), in call order.

    ``direct``: the layer has direct input synapses (a second synapse group for estimator ``official``).
    """
    spsa = 2 * config.directions
    if config.estimator == "shift":
        return [1, 6, spsa]
    if config.estimator == "chain":
        return [1, 6]
    if config.estimator == "official":
        return [6, spsa, spsa] if direct else [6, spsa]
    return []


EVAL_CHUNK = 256  # test samples per network run of backend_accuracy (one submission per layer and chunk)


def _chunks(n: int, size: int) -> list[int]:
    """Sizes of consecutive chunks of at most ``size`` covering ``n`` items."""
    full, rest = divmod(n, size)
    return [size] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class BackendEvaluation:
    """Single-shot test accuracy on the backend, over ``samples`` samples, and the observed spikes the ideal
    model forbade (``impossible_spikes`` of ``observed_spikes``)."""

    accuracy: float
    samples: int
    impossible_spikes: int
    observed_spikes: int


def backend_accuracy(
    hw: BackendTraining,
    net: SQSNetwork,
    x: Tensor,
    y: Tensor,
    kind: DataKind,
    *,
    T: int,
    p_max: float,
    generator: torch.Generator,
    seed: int | None = None,
) -> BackendEvaluation:
    """Classify ``x`` (``(N, D)`` static or ``(N, T, D)`` frames; labels ``y (N,)``) on ``hw.backend``, layer
    by layer (:func:`backends.execute.run_network`) in chunks of :data:`EVAL_CHUNK` samples; each chunk's
    submissions are charged to ``hw.meter`` together before it runs (``BudgetExceeded`` submits nothing)."""
    correct, impossible, observed, start = 0, 0, 0, 0
    for size in _chunks(len(y), EVAL_CHUNK):
        xb = encode(x[start : start + size], kind, T, p_max, generator)
        hw.meter.charge_all(estimate_network(net.config.sizes, T, size, hw.backend).layers, "test evaluation")
        run = run_network(net, xb, hw.backend, seed=derive_seed(seed, start))
        correct += int((run.predictions == y[start : start + size]).sum())
        impossible += run.impossible_spikes
        observed += sum(s.numel() for s in run.spikes)
        start += size
    return BackendEvaluation(correct / len(y), len(y), impossible, observed)


@dataclass(frozen=True)
class TrainingEstimate:
    """Submissions, tasks, shots and cost of one epoch, of the final test evaluation on the backend
    (:func:`backend_accuracy`) and of all ``epochs`` plus that evaluation (``total``); ``batches`` per epoch."""

    backend: str
    epochs: int
    batches: int
    per_epoch: Spend
    evaluation: Spend
    total: Spend
    price_note: str


def estimate_training(
    sizes: list[int],
    config: LocalConfig,
    n_train: int,
    backend: BaseBackend,
    *,
    direct: bool = False,
    n_test: int = 0,
) -> TrainingEstimate:
    """Price local-rule training of a network of layer ``sizes`` on ``n_train`` samples on ``backend``, then
    the evaluation of ``n_test`` test samples there (0: none).

    ``direct``: the last layer has direct input synapses. Each batch is priced with the backend's own
    :meth:`~backends.common.BaseBackend.estimate` for exactly the submissions :func:`backend_training`'s
    hooks and :func:`backend_accuracy` make.
    """
    if len(sizes) < 2 or n_train < 1:
        raise ValueError(f"need >= 2 layer sizes and >= 1 training sample, got sizes={sizes}, n_train={n_train}")
    batches = _chunks(n_train, config.batch_size)
    last = len(sizes) - 2
    meter = SpendMeter()
    note = ""
    for batch in batches:
        runs = batch * config.samples
        for index, n in enumerate(sizes[1:]):
            forward = backend.estimate(n, config.T, runs, 1)
            meter.charge(forward, "forward")
            note = forward.price_note
            for variants in probability_rows(config, direct and index == last):
                meter.charge(backend.estimate(n, 1, variants * config.T * runs, config.shots), "probabilities")
    epoch = meter.reading()
    evaluation = SpendMeter()
    for size in _chunks(n_test, EVAL_CHUNK):
        evaluation.charge_all(estimate_network(sizes, config.T, size, backend).layers, "test evaluation")
    total = evaluation.reading()
    for _ in range(config.epochs):
        total = total.add(epoch)
    return TrainingEstimate(backend.name, config.epochs, len(batches), epoch, evaluation.reading(), total, note)
