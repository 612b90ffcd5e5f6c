r"""Surrogate-gradient BPTT for spiking models (SQSNN and the baselines).

Per batch: encode the inputs (rate coding or event frames, ``(T, B, D)``), run the model single-shot,
and minimise the cross-entropy of ``logit_scale * r`` against the label, where ``r (B, C)`` is

* ``counts`` — the output spike count divided by T (the reference code's loss), or
* ``probs`` — the output's mean spike probability over T (lower variance: no output sampling noise).

Gradients cross the sampled spikes through the model's surrogate. Optimiser: Adam. With
``lr_scaling = "fan_in"`` every weight matrix of shape ``(out, in)`` learns at ``lr * 1000 / in`` (the other
parameters — angles, biases — at ``lr``): Adam moves every weight by about the learning rate per step, so a
neuron's current moves by about ``lr`` times its number of active inputs; scaling by ``1 / in`` makes that
shift the same for narrow and wide layers (``lr`` is the rate of a 1,000-input layer).
Everything random (shuffling, encoding, single shots) comes from one seeded ``torch.Generator``, so a run
is reproducible and resumable from a :class:`Checkpoint`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sqsnn.datasets import Dataset
from sqsnn.network import NetworkOutput
from sqsnn.training.loop import SCHEDULES, LoopSettings, Schedule, run_epochs, scheduled_rate, set_rate
from sqsnn.training.results import (
    Checkpoint,
    EpochMetrics,
    EvalResult,
    Loss,
    SpikingModel,
    TrainingStopped,
    TrainResult,
    evaluate,
    output_rates,
)

__all__ = [
    "Checkpoint",
    "EpochMetrics",
    "EvalResult",
    "Loss",
    "Schedule",
    "SpikingModel",
    "TrainConfig",
    "TrainResult",
    "TrainingStopped",
    "batch_loss",
    "evaluate",
    "mean_spike_rate",
    "output_rates",
    "train",
]

LrScaling = Literal["fan_in", "none"]
DType = Literal["float64", "float32"]
REFERENCE_FAN_IN = 1000


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per Adam step.
        lr: Adam learning rate.
        loss: ``counts`` (spike counts / T) or ``probs`` (mean output probability).
        logit_scale: multiplies the rates before the softmax (rates lie in [0, 1]).
        T: time steps per sample (ignored for event frames, whose T is the dataset's).
        p_max: rate-coding ceiling.
        seed: seed of the training generator.
        eval_batch_size: batch size of evaluation passes.
        eval_runs: single-shot runs of each held-out sample per evaluation (validation after every epoch, test
            once); the accuracy is their mean, which lowers the readout noise that epoch selection sees.
        schedule: learning rate ``constant`` or ``cosine`` (decays to 0 over all epochs' batches).
        lr_scaling: ``fan_in`` (weights of a layer with ``in`` inputs learn at ``lr * 1000 / in``) or
            ``none`` (every parameter at ``lr``).
        rate_penalty: lambda >= 0 of the spike-rate penalty added to the training loss (see
            :func:`batch_loss`); 0 turns it off.
        dtype: ``float64`` or ``float32``: :func:`train` converts the model's parameters (in place) and the
            data to it, so that encoding, the forward and backward passes and Adam all run in that precision.
    """

    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    loss: Loss = "counts"
    logit_scale: float = 5.0
    T: int = 5
    p_max: float = 0.5
    seed: int = 0
    eval_batch_size: int = 500
    eval_runs: int = 1
    schedule: Schedule = "cosine"
    lr_scaling: LrScaling = "fan_in"
    rate_penalty: float = 0.0
    dtype: DType = "float64"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "T", "eval_batch_size", "eval_runs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.loss not in ("counts", "probs"):
            raise ValueError(f"loss must be 'counts' or 'probs'; got {self.loss!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be 'constant' or 'cosine'; got {self.schedule!r}")
        if self.lr_scaling not in ("fan_in", "none"):
            raise ValueError(f"lr_scaling must be 'fan_in' or 'none'; got {self.lr_scaling!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32'; got {self.dtype!r}")
        if not 0 < self.p_max <= 1:
            raise ValueError(f"p_max must be in (0, 1]; got {self.p_max}")
        if self.lr <= 0 or self.logit_scale <= 0:
            raise ValueError("lr and logit_scale must be > 0")
        if not self.rate_penalty >= 0:
            raise ValueError(f"rate_penalty must be >= 0; got {self.rate_penalty}")


def batch_loss(out: NetworkOutput, y: Tensor, config: TrainConfig) -> Tensor:
    """Mean cross-entropy of the scaled output rates against labels ``y (B,)``, plus
    ``rate_penalty * mean_rate``: the spike probability per neuron per step averaged over every neuron of
    every layer, the batch and the T steps (``out.probs``; the LIF baselines' probabilities are their spikes).
    """
    loss = nn.functional.cross_entropy(config.logit_scale * output_rates(out, config.loss), y)
    if config.rate_penalty > 0:
        loss = loss + config.rate_penalty * mean_spike_rate(out)
    return loss


def mean_spike_rate(out: NetworkOutput) -> Tensor:
    """Spike probability per neuron per step over every neuron of every layer (scalar, differentiable)."""
    total = sum(p.sum() for p in out.probs)
    count = sum(p.numel() for p in out.probs)
    return total / count  # type: ignore[return-value]


def train(
    model: SpikingModel,
    data: Dataset,
    config: TrainConfig,
    *,
    resume: Checkpoint | None = None,
    on_epoch: Callable[[EpochMetrics, Checkpoint], None] | None = None,
    on_batch: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with surrogate-gradient BPTT and Adam, in ``config.dtype`` (the model is
    converted in place).

    Args:
        resume: continue after the checkpoint's epoch (model, optimiser and generator restored).
        on_epoch: called after every epoch with its metrics and a checkpoint to persist.
        on_batch: called after every batch with ``(epoch, batch_index, loss)``.
        should_stop: polled between batches; True raises :class:`TrainingStopped`.
    """
    settings = LoopSettings.of(config, loss=config.loss, logit_scale=config.logit_scale, dtype=config.dtype)
    if isinstance(model, nn.Module):
        model.to(getattr(torch, config.dtype))
    gen = torch.Generator().manual_seed(config.seed)
    learner = _AdamLearner(model, config, gen)
    return run_epochs(
        model,  # type: ignore[arg-type]
        data,
        settings,
        learner,
        gen,
        resume=resume,
        on_epoch=on_epoch,
        on_batch=on_batch,
        should_stop=should_stop,
    )


def lr_scale(parameter: Tensor, lr_scaling: LrScaling) -> float:
    """Factor on the learning rate of one parameter: ``1000 / in`` for an ``(out, in)`` weight matrix under
    ``fan_in`` scaling, else 1."""
    if lr_scaling == "fan_in" and parameter.dim() == 2:
        return REFERENCE_FAN_IN / parameter.shape[1]
    return 1.0


def parameter_groups(model: SpikingModel, lr_scaling: LrScaling) -> list[dict[str, Any]]:
    """Adam parameter groups, one per learning-rate factor (``lr_scale`` holds it)."""
    groups: dict[float, list[Tensor]] = {}
    for parameter in model.parameters():
        groups.setdefault(lr_scale(parameter, lr_scaling), []).append(parameter)
    return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]


class _AdamLearner:
    """One Adam step on the batch loss, with the configured learning-rate schedule."""

    def __init__(self, model: SpikingModel, config: TrainConfig, generator: torch.Generator) -> None:
        self.model = model
        self.config = config
        self.generator = generator
        self.optimizer = torch.optim.Adam(parameter_groups(model, config.lr_scaling), lr=config.lr)

    def step(self, x: Tensor, y: Tensor, progress: float) -> tuple[float, int]:
        out = self.model(x, self.generator)
        loss = batch_loss(out, y, self.config)
        set_rate(self.optimizer, scheduled_rate(self.config.lr, self.config.schedule, progress))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((self.model.predict(out) == y).sum())

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.optimizer.state_dict())  # a snapshot: the live one keeps changing

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
