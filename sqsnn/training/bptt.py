r"""Surrogate-gradient BPTT for spiking models (SQSNN and the baselines).

Per batch: encode the inputs (rate coding or event frames, ``(T, B, D)``), run the model single-shot,
and minimise the cross-entropy of ``logit_scale * r`` against the label, where ``r (B, C)`` is

* ``counts`` — the output spike count divided by T (the reference code's loss), or
* ``probs`` — the output's mean spike probability over T (lower variance: no output sampling noise).

Gradients cross the sampled spikes through the model's surrogate. Optimiser: Adam.
Everything random (shuffling, encoding, single shots) comes from one seeded ``torch.Generator``, so a run
is reproducible and resumable from a :class:`Checkpoint`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sqsnn.datasets import Dataset
from sqsnn.network import NetworkOutput
from sqsnn.training.loop import LoopSettings, run_epochs
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
    "output_rates",
    "train",
]

Schedule = Literal["constant", "cosine"]


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
        schedule: learning rate ``constant`` or ``cosine`` (decays to 0 over all epochs' batches).
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
    schedule: Schedule = "cosine"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "T", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.loss not in ("counts", "probs"):
            raise ValueError(f"loss must be 'counts' or 'probs'; got {self.loss!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine'; got {self.schedule!r}")
        if not 0 < self.p_max <= 1:
            raise ValueError(f"p_max must be in (0, 1]; got {self.p_max}")
        if self.lr <= 0 or self.logit_scale <= 0:
            raise ValueError("lr and logit_scale must be > 0")


def batch_loss(out: NetworkOutput, y: Tensor, config: TrainConfig) -> Tensor:
    """Mean cross-entropy of the scaled output rates against labels ``y (B,)``."""
    return nn.functional.cross_entropy(config.logit_scale * output_rates(out, config.loss), y)


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
    """Train ``model`` on ``data`` with surrogate-gradient BPTT and Adam.

    Args:
        resume: continue after the checkpoint's epoch (model, optimiser and generator restored).
        on_epoch: called after every epoch with its metrics and a checkpoint to persist.
        on_batch: called after every batch with ``(epoch, batch_index, loss)``.
        should_stop: polled between batches; True raises :class:`TrainingStopped`.
    """
    settings = LoopSettings.of(config, loss=config.loss, logit_scale=config.logit_scale)
    gen = torch.Generator().manual_seed(config.seed)
    learner = _AdamLearner(model, config, gen, math.ceil(len(data.y_train) / config.batch_size))
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


class _AdamLearner:
    """One Adam step on the batch loss, with the configured learning-rate schedule."""

    def __init__(
        self, model: SpikingModel, config: TrainConfig, generator: torch.Generator, batches_per_epoch: int
    ) -> None:
        self.model = model
        self.config = config
        self.generator = generator
        self.batches_per_epoch = batches_per_epoch
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def learning_rate(self, epoch: int, batch: int) -> float:
        """Constant, or cosine-decayed to 0 over all batches of all epochs."""
        if self.config.schedule == "constant":
            return self.config.lr
        done = (epoch - 1) * self.batches_per_epoch + batch
        return 0.5 * self.config.lr * (1 + math.cos(math.pi * done / (self.batches_per_epoch * self.config.epochs)))

    def step(self, x: Tensor, y: Tensor, epoch: int, batch: int) -> tuple[float, int]:
        out = self.model(x, self.generator)
        loss = batch_loss(out, y, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(epoch, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), int((self.model.predict(out) == y).sum())

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.optimizer.state_dict())  # a snapshot: the live one keeps changing

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)
