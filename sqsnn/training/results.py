"""What every trainer produces and consumes: metrics, checkpoints, results, and the evaluation pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from sqsnn.encoders import DataKind, encode
from sqsnn.network import NetworkOutput

Loss = Literal["counts", "probs"]


class SpikingModel(Protocol):
    """What the trainer needs from a model."""

    def __call__(self, x: Tensor, generator: torch.Generator | None) -> NetworkOutput: ...
    def predict(self, out: NetworkOutput) -> Tensor: ...
    def parameters(self) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class EpochMetrics:
    """Metrics after one epoch.

    One held-out split is evaluated per epoch: the validation split when the dataset has one
    (``val_accuracy`` set, ``test_accuracy`` None — the test split is then evaluated once, after training,
    on the selected epoch's weights), else the test split (``test_accuracy`` set, ``val_accuracy`` None).
    ``spike_rates`` are spikes per neuron per step on that split, per layer.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None
    spike_rates: list[float]
    seconds: float
    val_accuracy: float | None = None


@dataclass
class EvalResult:
    """Accuracy, mean cross-entropy and per-layer spike rates of one evaluation pass (over ``runs`` single-shot
    runs of the split: figures averaged over runs; ``predictions (runs N,)``, run by run)."""

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
    best_model_state: dict[str, Any] | None = None


def best_epoch(metrics: list[EpochMetrics]) -> EpochMetrics | None:
    """The epoch kept: the first with the highest validation accuracy, else (no validation) the last."""
    if not metrics:
        return None
    if metrics[0].val_accuracy is None:
        return metrics[-1]
    return max(metrics, key=lambda m: (m.val_accuracy, -m.epoch))


@dataclass
class TrainResult:
    """Per-epoch metrics and the final figures of the model that training returns.

    With a validation split the model holds the weights of ``best_epoch`` (highest validation accuracy,
    ``val_accuracy``) and ``test_accuracy`` / ``spike_rates`` come from one evaluation of the test split with
    those weights; without one, the last epoch is kept and its test figures are reported
    (``val_accuracy`` None). ``best_epoch`` is 0 and the figures NaN / empty before any epoch.
    """

    metrics: list[EpochMetrics]
    test_accuracy: float
    spike_rates: list[float]
    val_accuracy: float | None = None
    best_epoch: int = 0


class TrainingStopped(RuntimeError):
    """Raised when ``should_stop`` asked the trainer to stop between batches."""


def output_rates(out: NetworkOutput, loss: Loss) -> Tensor:
    """``(B, C)`` rates that the loss acts on (see module docstring)."""
    return (out.spikes[-1] if loss == "counts" else out.probs[-1]).mean(0)


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
    runs: int = 1,
) -> EvalResult:
    """Single-shot accuracy of ``model`` on ``x`` (``(N, D)`` static or ``(N, T, D)`` frames), labels ``y``.

    Each sample is run ``runs`` times, each run a fresh single-shot forward pass (its own encoding and spike
    draws); the figures are averages over the ``runs N`` passes, so ``accuracy`` is the mean of the runs'
    single-shot accuracies: the same expectation as one run, with the readout's run-to-run variance divided by
    ``runs``.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1; got {runs}")
    model.train(False)
    preds, losses, rates = [], [], []
    sizes = []
    # batches of the split repeated ``runs`` times end to end (a batch may span two runs), gathered one batch
    # at a time: memory stays one batch's whatever the number of runs
    for start in range(0, runs * len(y), batch_size):
        rows = torch.arange(start, min(start + batch_size, runs * len(y))) % len(y)
        xb, yb = x[rows], y[rows]
        out = model(encode(xb, kind, T, p_max, generator), generator)
        preds.append(model.predict(out))
        losses.append(float(nn.functional.cross_entropy(logit_scale * output_rates(out, loss), yb)) * len(yb))
        rates.append([float(s.mean()) * len(yb) for s in out.spikes])
        sizes.append(len(yb))
    n = sum(sizes)
    predictions = torch.cat(preds)
    return EvalResult(
        accuracy=float((predictions == y.repeat(runs)).double().mean()),
        loss=sum(losses) / n,
        spike_rates=[sum(col) / n for col in zip(*rates, strict=True)],
        predictions=predictions,
    )
