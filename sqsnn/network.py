"""Feed-forward SQSNN: layers of SQS neurons joined by trainable synapses.

Layer l receives the spikes ``x_l (T, B, n_{l-1})`` of the layer below (the encoded input for l = 1) and
computes currents ``z = x_l W^T (+ b)``; with ``direct=True`` the last layer also receives the encoded
input through its own weights ``W_d``: ``z = x_L W^T + x_0 W_d^T (+ b)``. The currents drive the neurons of
:mod:`sqsnn.neuron`. Trainable parameters: weights, optional biases and three angles per neuron.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from sqsnn import synapses
from sqsnn.neuron import MemoryMode, SQSParams, Surrogate, check_mode, check_surrogate, sqs_layer


class NetworkOutput(NamedTuple):
    """Every layer's spikes and per-step firing probabilities, each ``(T, B, n_l)``."""

    spikes: list[Tensor]
    probs: list[Tensor]


@dataclass
class NetworkConfig:
    """Architecture of an SQSNN.

    Attributes:
        sizes: layer widths including the input, e.g. ``[784, 1000, 10]``.
        mode: memory mode of every neuron.
        bias: trainable bias current per neuron.
        direct: direct synapses from the input to the last layer.
        surrogate: backward rule for ds/dp.
        weight_scale: weights start uniform in ``weight_mean / fan_in ± weight_scale * sqrt(3 / fan_in)``.
        weight_mean: mean initial weight times fan_in, so that the mean initial current is about
            ``weight_mean`` times the mean input rate. A positive mean keeps most currents above 0 at the
            start, where ``RX(pi z)`` passes gradient (for z <= 0 the embedding is the identity and the
            neuron's weights get none).
        angle_scale: angles start uniform in ``±angle_scale`` radians.
        output_theta_in: centre (radians) of the last layer's initial ``theta_in`` (uniform in
            ``output_theta_in ± angle_scale``). With 0 an output neuron is silent at z = 0, the edge of the
            region z <= 0 where its weights get no gradient, and the loss drives every non-target output
            towards silence, so an output whose currents all cross below 0 stays there (a dead class). At
            -pi/2 it is silent at z = 1/2, inside the region that passes gradient, and fires with
            probability about 1/2 (at t = 1) for z <= 0, where the loss no longer draws it.
        embedding_leak: backward slope of ``max(z, 0)`` for ``z <= 0`` during training (a surrogate, like
            ``surrogate``; 0 is the exact gradient). Without it a neuron whose currents fell below 0 for every
            input gets no gradient again (a dead neuron); the forward pass is unchanged.
        seed: initialisation seed.
    """

    sizes: list[int] = field(default_factory=lambda: [64, 128, 10])
    mode: MemoryMode = "quantum"
    bias: bool = False
    direct: bool = False
    surrogate: Surrogate = "sigmoid"
    weight_scale: float = 1.0
    weight_mean: float = 1.0
    angle_scale: float = 0.5
    output_theta_in: float = 0.0
    embedding_leak: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or any(int(s) < 1 for s in self.sizes):
            raise ValueError(f"sizes must list at least two positive widths (input, ..., output); got {self.sizes}")
        self.sizes = [int(s) for s in self.sizes]
        check_mode(self.mode)
        check_surrogate(self.surrogate)
        if self.weight_scale <= 0 or self.angle_scale < 0 or self.embedding_leak < 0:
            raise ValueError("weight_scale must be > 0, angle_scale >= 0 and embedding_leak >= 0")


class SpikingNetwork(nn.Module):
    """What every model shares (SQSNN, LIF SNN, QLIF): readout, parameter count, configuration, checkpoints.

    Subclasses set ``kind`` (the checkpoint registry key) and ``config_class`` (a dataclass whose fields
    rebuild the model), keep the configuration in ``self.config`` and implement ``forward``.
    """

    kind: str
    config_class: type[Any]
    config: Any

    @staticmethod
    def predict(out: NetworkOutput) -> Tensor:
        """Class with the most output spikes over T; ties broken by the highest mean probability. ``(B,)``."""
        return predict_from_output(out.spikes[-1], out.probs[-1])

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def describe(self) -> dict[str, Any]:
        """Configuration as plain data (what a checkpoint records)."""
        return asdict(self.config)

    def save(self, path: str | Path, **metadata: Any) -> None:
        """Write a self-describing checkpoint (configuration, weights and ``metadata``)."""
        save_model(self, path, **metadata)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """Build an untrained model from :meth:`describe`'s output."""
        return cls(cls.config_class(**config))


class SQSLayer(nn.Module):
    """One layer of SQS neurons with its incoming synapses.

    Parameters: ``weight (out, in)``, optional ``bias (out,)`` and ``direct_weight (out, direct_in)``,
    ``theta_ent``, ``theta_mem``, ``theta_in`` each ``(out,)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        direct_features: int,
        weight_scale: float,
        weight_mean: float,
        angle_scale: float,
        generator: torch.Generator,
        theta_in_center: float = 0.0,
    ) -> None:
        super().__init__()

        def uniform(shape: tuple[int, ...], center: float, half_width: float) -> nn.Parameter:
            data = center + (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * half_width
            return nn.Parameter(data)

        fan_in = in_features + direct_features
        w_center, w_width = weight_mean / fan_in, weight_scale * math.sqrt(3.0 / fan_in)
        self.weight = uniform((out_features, in_features), w_center, w_width)
        self.direct_weight = uniform((out_features, direct_features), w_center, w_width) if direct_features else None
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=torch.float64)) if bias else None
        self.theta_ent = uniform((out_features,), 0.0, angle_scale)
        self.theta_mem = uniform((out_features,), 0.0, angle_scale)
        self.theta_in = uniform((out_features,), theta_in_center, angle_scale)

    def params(self) -> SQSParams:
        """The neurons' angles."""
        return SQSParams(self.theta_ent, self.theta_mem, self.theta_in)

    def currents(self, x: Tensor, direct_x: Tensor | None = None) -> Tensor:
        """Input currents ``(T, B, out)`` from spikes ``x (T, B, in)`` (and ``direct_x (T, B, direct_in)``)."""
        z = synapses.linear(x, self.weight, self.bias)
        if self.direct_weight is not None:
            if direct_x is None:
                raise ValueError("this layer has direct synapses: pass the encoded input as direct_x")
            z = z + synapses.linear(direct_x, self.direct_weight)
        return z


class SQSNetwork(SpikingNetwork):
    """Feed-forward SQSNN (see module docstring)."""

    kind = "sqsnn"
    config_class = NetworkConfig

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        gen = torch.Generator().manual_seed(config.seed)
        sizes = config.sizes
        self.layers = nn.ModuleList(
            SQSLayer(
                sizes[i],
                sizes[i + 1],
                bias=config.bias,
                direct_features=sizes[0] if (config.direct and i == len(sizes) - 2 and i > 0) else 0,
                weight_scale=config.weight_scale,
                weight_mean=config.weight_mean,
                angle_scale=config.angle_scale,
                generator=gen,
                theta_in_center=config.output_theta_in if i == len(sizes) - 2 else 0.0,
            )
            for i in range(len(sizes) - 1)
        )

    def forward(self, x: Tensor, generator: torch.Generator | None) -> NetworkOutput:
        """Run all layers single-shot on encoded input ``x (T, B, sizes[0])`` (cast to the parameters' dtype)."""
        if x.dim() != 3 or x.shape[-1] != self.config.sizes[0]:
            raise ValueError(f"input must be (T, B, {self.config.sizes[0]}); got {tuple(x.shape)}")
        spikes, probs = [], []
        x = x.to(next(self.parameters()).dtype)
        h = x
        for layer in self.layers:
            assert isinstance(layer, SQSLayer)
            z = layer.currents(h, x if layer.direct_weight is not None else None)
            h, p = sqs_layer(
                z, layer.params(), self.config.mode, generator, self.config.surrogate, leak=self.config.embedding_leak
            )
            spikes.append(h)
            probs.append(p)
        return NetworkOutput(spikes, probs)

    @classmethod
    def load(cls, path: str | Path) -> tuple[SQSNetwork, dict[str, Any]]:
        """Load a checkpoint that holds an SQSNN; returns ``(network, metadata)``."""
        model, metadata = load_model(path)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not an SQSNetwork")
        return model, metadata


def predict_from_output(spikes: Tensor, probs: Tensor) -> Tensor:
    """Argmax of spike count ``(T, B, C)`` with the mean probability as tie-breaker; returns ``(B,)``."""
    score = spikes.sum(0) + 0.5 * probs.mean(0)
    return score.argmax(dim=-1)


MODEL_CLASSES: dict[str, str] = {
    "sqsnn": "sqsnn.network:SQSNetwork",
    "lif": "sqsnn.baselines.lif:LIFNetwork",
    "qlif": "sqsnn.baselines.qlif:QLIFNetwork",
}


def model_class(kind: str) -> Any:
    """The model class registered under ``kind`` (imported lazily)."""
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_CLASSES)}")
    module_name, _, cls_name = MODEL_CLASSES[kind].partition(":")
    module = __import__(module_name, fromlist=[cls_name])
    return getattr(module, cls_name)


def save_model(model: nn.Module, path: str | Path, **metadata: Any) -> None:
    """Save any registered model (it provides ``kind`` and ``describe()``) with its configuration and JSON
    ``metadata``, as safetensors (:mod:`sqsnn.model_io`; no pickle)."""
    from sqsnn.model_io import save_model_file

    save_model_file(model, path, **metadata)


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model file written by :func:`save_model`; returns ``(model, metadata)``."""
    from sqsnn.model_io import load_model_file

    return load_model_file(path)
