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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from sqsnn.datasets import Dataset
from sqsnn.encoders import DataKind, encode
from sqsnn.network import NetworkOutput

Loss = Literal["counts", "probs"]
Schedule = Literal["constant", "cosine"]


class SpikingModel(Protocol):
    """What the trainer needs from a model."""

    def __call__(self, x: Tensor, generator: torch.Generator | None) -> NetworkOutput: ...
    def predict(self, out: NetworkOutput) -> Tensor: ...
    def parameters(self) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


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


@dataclass
class EpochMetrics:
    """Metrics after one epoch; ``spike_rates`` are spikes per neuron per step on the test set, per layer."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    spike_rates: list[float]
    seconds: float


@dataclass
class EvalResult:
    """Accuracy, mean cross-entropy and per-layer spike rates of one evaluation pass."""

    accuracy: float
    loss: float
    spike_rates: list[float]
    predictions: Tensor = field(repr=False)


@dataclass
class Checkpoint:
    """Everything needed to resume training after ``epoch`` epochs."""

    epoch: int
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    generator_state: Tensor
    metrics: list[EpochMetrics]


@dataclass
class TrainResult:
    """Per-epoch metrics and the final test accuracy and spike rates."""

    metrics: list[EpochMetrics]
    test_accuracy: float
    spike_rates: list[float]


class TrainingStopped(RuntimeError):
    """Raised when ``should_stop`` asked the trainer to stop between batches."""


def output_rates(out: NetworkOutput, loss: Loss) -> Tensor:
    """``(B, C)`` rates that the loss acts on (see module docstring)."""
    return (out.spikes[-1] if loss == "counts" else out.probs[-1]).mean(0)


def batch_loss(out: NetworkOutput, y: Tensor, config: TrainConfig) -> Tensor:
    """Mean cross-entropy of the scaled output rates against labels ``y (B,)``."""
    return nn.functional.cross_entropy(config.logit_scale * output_rates(out, config.loss), y)


@torch.no_grad()
def evaluate(
    model: SpikingModel,
    x: Tensor,
    y: Tensor,
    kind: DataKind,
    *,
    T: int,
    p_max: float,
    generator: torch.Generator,
    batch_size: int = 500,
    loss: Loss = "counts",
    logit_scale: float = 5.0,
) -> EvalResult:
    """Single-shot accuracy of ``model`` on ``x`` (``(N, D)`` static or ``(N, T, D)`` frames), labels ``y``."""
    model.train(False)
    preds, losses, rates = [], [], []
    sizes = []
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        out = model(encode(xb, kind, T, p_max, generator), generator)
        preds.append(model.predict(out))
        losses.append(float(nn.functional.cross_entropy(logit_scale * output_rates(out, loss), yb)) * len(yb))
        rates.append([float(s.mean()) * len(yb) for s in out.spikes])
        sizes.append(len(yb))
    n = sum(sizes)
    predictions = torch.cat(preds)
    return EvalResult(
        accuracy=float((predictions == y).double().mean()),
        loss=sum(losses) / n,
        spike_rates=[sum(col) / n for col in zip(*rates, strict=True)],
        predictions=predictions,
    )


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
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    metrics: list[EpochMetrics] = []
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume.model_state)
        optimizer.load_state_dict(resume.optimizer_state)
        gen.set_state(resume.generator_state)
        metrics = list(resume.metrics)
        first_epoch = resume.epoch + 1
    n_train = len(data.y_train)
    n_batches = math.ceil(n_train / config.batch_size)
    total_steps = n_batches * config.epochs

    def learning_rate(step: int) -> float:
        if config.schedule == "constant":
            return config.lr
        return 0.5 * config.lr * (1 + math.cos(math.pi * step / total_steps))

    for epoch in range(first_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train(True)
        order = torch.randperm(n_train, generator=gen)
        total_loss, correct = 0.0, 0
        for b in range(n_batches):
            if should_stop is not None and should_stop():
                raise TrainingStopped(f"stopped during epoch {epoch} before batch {b}")
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            out = model(encode(xb, data.kind, config.T, config.p_max, gen), gen)
            loss = batch_loss(out, yb, config)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate((epoch - 1) * n_batches + b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
            total_loss += loss_value * len(idx)
            correct += int((model.predict(out) == yb).sum())
            if on_batch is not None:
                on_batch(epoch, b, loss_value)
        result = evaluate(
            model,
            data.x_test,
            data.y_test,
            data.kind,
            T=config.T,
            p_max=config.p_max,
            generator=gen,
            batch_size=config.eval_batch_size,
            loss=config.loss,
            logit_scale=config.logit_scale,
        )
        metrics.append(
            EpochMetrics(
                epoch=epoch,
                train_loss=total_loss / n_train,
                train_accuracy=correct / n_train,
                test_accuracy=result.accuracy,
                spike_rates=result.spike_rates,
                seconds=time.perf_counter() - started,
            )
        )
        if on_epoch is not None:
            checkpoint = Checkpoint(
                epoch=epoch,
                model_state={k: v.detach().clone() for k, v in model.state_dict().items()},
                optimizer_state=copy.deepcopy(optimizer.state_dict()),  # the live one keeps changing
                generator_state=gen.get_state(),
                metrics=list(metrics),
            )
            on_epoch(metrics[-1], checkpoint)
    last = metrics[-1] if metrics else None
    return TrainResult(
        metrics=metrics,
        test_accuracy=last.test_accuracy if last else float("nan"),
        spike_rates=last.spike_rates if last else [],
    )
