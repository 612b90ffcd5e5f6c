"""The epoch loop every trainer shares (BPTT and the local rule).

A trainer supplies a :class:`Learner`: one learning step on an encoded batch, and the state it needs to
resume (optimiser moments, baselines). The loop owns everything else — shuffling, encoding, stop requests,
evaluation, epoch selection, metrics, checkpoints and resumption — so that the two trainers behave
identically there.

Epoch selection: when the dataset has a validation split, it is evaluated after every epoch (the mean
single-shot accuracy of ``eval_runs`` runs of each sample), the weights
of the epoch with the highest validation accuracy are kept (the first such epoch), and the test split is
evaluated once, after the last epoch, with those weights. Without a validation split the test split is
evaluated after every epoch and the last epoch's weights are kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import torch
from torch import Tensor, nn

from sqsnn import kernels
from sqsnn.datasets import Dataset
from sqsnn.encoders import encode
from sqsnn.training.results import (
    Checkpoint,
    EpochMetrics,
    EvalResult,
    TrainingStopped,
    TrainResult,
    best_epoch,
    evaluate,
)

Schedule = Literal["constant", "cosine"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


def scheduled_rate(lr: float, schedule: Schedule, progress: float) -> float:
    """Learning rate of a step taken after ``progress`` (0 to 1) of the run's batches: ``lr`` (``constant``) or
    :math:`\\tfrac12 \\, lr \\, (1 + \\cos(\\pi \\, progress))` (``cosine``: from ``lr`` to 0 over all epochs)."""
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1 + math.cos(math.pi * progress))


def set_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set every parameter group's learning rate to ``rate`` times the group's ``lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group["lr_scale"]


class Learner(Protocol):
    """One trainer's learning step and resumable state."""

    def step(self, x: Tensor, y: Tensor, progress: float) -> tuple[float, int]:
        """Learn from encoded spikes ``x (T, B, D)`` and labels ``y (B,)``, the run's batches before this one
        being the share ``progress`` of all (for learning-rate schedules); returns (loss, correct runs)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from a trainer's configuration.

    ``runs_per_sample`` is how many forward runs each training sample makes (the training accuracy's
    denominator); ``loss`` and ``logit_scale`` only shape the reported test loss; ``dtype`` (``float64`` or
    ``float32``) is the precision the data are converted to before encoding.
    """

    epochs: int
    batch_size: int
    T: int
    p_max: float
    eval_batch_size: int
    eval_runs: int = 1
    runs_per_sample: int = 1
    loss: str = "counts"
    logit_scale: float = 5.0
    dtype: str = "float64"

    @classmethod
    def of(cls, config: Any, **extra: Any) -> LoopSettings:
        """Settings from a trainer configuration (``epochs``, ``batch_size``, ``T``, ``p_max``,
        ``eval_batch_size``, ``eval_runs``) plus ``extra`` fields."""
        names = ("epochs", "batch_size", "T", "p_max", "eval_batch_size", "eval_runs")
        return cls(**{name: getattr(config, name) for name in names}, **extra)


def run_epochs(
    model: nn.Module,
    data: Dataset,
    settings: LoopSettings,
    learner: Learner,
    generator: torch.Generator,
    *,
    resume: Checkpoint | None,
    on_epoch: Callable[[EpochMetrics, Checkpoint], None] | None,
    on_batch: Callable[[int, int, float], None] | None,
    should_stop: Callable[[], bool] | None,
) -> TrainResult:
    """Train for ``settings.epochs`` epochs (after ``resume``'s, if given), evaluate after each, and return
    the selected epoch's model and figures (see the module docstring)."""
    metrics: list[EpochMetrics] = []
    best_state: dict[str, Any] | None = None
    first_epoch = 1
    if resume is not None:
        model.load_state_dict(resume.model_state)
        learner.load_state_dict(resume.optimizer_state)
        generator.set_state(resume.generator_state)
        metrics = list(resume.metrics)
        best_state = resume.best_model_state
        first_epoch = resume.epoch + 1
    data = with_dtype(data, getattr(torch, settings.dtype))
    kernels.keep_freed_memory()
    n_train = len(data.y_train)
    n_batches = math.ceil(n_train / settings.batch_size)
    for epoch in range(first_epoch, settings.epochs + 1):
        started = time.perf_counter()
        model.train(True)
        order = torch.randperm(n_train, generator=generator)
        total_loss, correct = 0.0, 0
        for b in range(n_batches):
            if should_stop is not None and should_stop():
                raise TrainingStopped(f"stopped during epoch {epoch} before batch {b}")
            idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            x = encode(data.x_train[idx], data.kind, settings.T, settings.p_max, generator)
            progress = ((epoch - 1) * n_batches + b) / (n_batches * settings.epochs)
            loss, hits = learner.step(x, data.y_train[idx], progress)
            total_loss += loss * len(idx)
            correct += hits
            if on_batch is not None:
                on_batch(epoch, b, loss)
        validating = data.x_val is not None and data.y_val is not None
        result = _evaluate_split(model, data, "val" if validating else "test", settings, generator)
        metrics.append(
            EpochMetrics(
                epoch=epoch,
                train_loss=total_loss / n_train,
                train_accuracy=correct / (n_train * settings.runs_per_sample),
                test_accuracy=None if validating else result.accuracy,
                val_accuracy=result.accuracy if validating else None,
                spike_rates=result.spike_rates,
                seconds=time.perf_counter() - started,
            )
        )
        if validating and best_epoch(metrics) is metrics[-1]:
            best_state = _snapshot(model)
        if on_epoch is not None:
            checkpoint = Checkpoint(
                epoch=epoch,
                model_state=_snapshot(model),
                optimizer_state=learner.state_dict(),
                generator_state=generator.get_state(),
                metrics=list(metrics),
                best_model_state=best_state,
            )
            on_epoch(metrics[-1], checkpoint)
    return _final_result(model, data, settings, generator, metrics, best_state)


def with_dtype(data: Dataset, dtype: torch.dtype) -> Dataset:
    """``data`` with its inputs (train, validation, test) converted to ``dtype`` (the same object if they
    already are)."""
    if data.x_train.dtype == dtype:
        return data

    x_val = None if data.x_val is None else data.x_val.to(dtype)
    return dataclasses.replace(data, x_train=data.x_train.to(dtype), x_test=data.x_test.to(dtype), x_val=x_val)


def _snapshot(model: nn.Module) -> dict[str, Any]:
    """A detached copy of the model's weights."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _evaluate_split(
    model: nn.Module, data: Dataset, split: str, settings: LoopSettings, generator: torch.Generator
) -> EvalResult:
    """Single-shot evaluation on the ``val`` or ``test`` split, ``settings.eval_runs`` runs averaged."""
    x, y = (data.x_val, data.y_val) if split == "val" else (data.x_test, data.y_test)
    assert x is not None and y is not None
    return evaluate(
        model,  # type: ignore[arg-type]
        x,
        y,
        data.kind,
        T=settings.T,
        p_max=settings.p_max,
        generator=generator,
        batch_size=settings.eval_batch_size,
        loss=settings.loss,  # type: ignore[arg-type]
        logit_scale=settings.logit_scale,
        runs=settings.eval_runs,
    )


def _final_result(
    model: nn.Module,
    data: Dataset,
    settings: LoopSettings,
    generator: torch.Generator,
    metrics: list[EpochMetrics],
    best_state: dict[str, Any] | None,
) -> TrainResult:
    """Load the selected epoch's weights and report its figures (one test evaluation when validating)."""
    chosen = best_epoch(metrics)
    if chosen is None:
        return TrainResult(metrics=metrics, test_accuracy=float("nan"), spike_rates=[])
    if chosen.val_accuracy is None:
        assert chosen.test_accuracy is not None
        return TrainResult(metrics, chosen.test_accuracy, chosen.spike_rates, best_epoch=chosen.epoch)
    if best_state is None:
        raise ValueError(
            "the checkpoint holds validation metrics but no best-epoch weights; it was written by an older "
            "sqsnn — resume is not possible, train again"
        )
    model.load_state_dict(best_state)
    test = _evaluate_split(model, data, "test", settings, generator)
    return TrainResult(metrics, test.accuracy, test.spike_rates, chosen.val_accuracy, chosen.epoch)
