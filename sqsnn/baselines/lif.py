r"""Classical leaky integrate-and-fire (LIF) SNN, trained with surrogate-gradient BPTT.

Per layer and step (dimensionless membrane, threshold :math:`\vartheta`, decay :math:`\beta` per step):

.. math::

    v_t = \beta\, v_{t-1} + I_t,\qquad I_t = W x_t + b,\qquad s_t = H(v_t - \vartheta),

after which a neuron that spiked is reset to 0 (the reset carries no gradient). ``v_0 = 0`` for every
sample. The backward pass replaces :math:`H'` by the fast-sigmoid surrogate
(:mod:`sqsnn.baselines.surrogate`). Shapes are time-major: currents and spikes ``(T, B, n)``.

:func:`matched_hidden_sizes` picks one hidden width so that the LIF network's trainable-parameter count is
as close as an integer width allows to a target (an SQSNN's ``num_parameters()``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from sqsnn.baselines.surrogate import spike_fn
from sqsnn.network import NetworkOutput, SpikingNetwork


class LIFParams(NamedTuple):
    """Fixed (untrained) neuron constants."""

    beta: float = 0.9  # membrane decay factor per step, in (0, 1]
    threshold: float = 1.0  # firing threshold (membrane units)
    slope: float = 5.0  # surrogate steepness k, 1/membrane units


class LIFState(NamedTuple):
    """Membrane potential entering a step, ``(B, n)``."""

    v: Tensor


def lif_step(current: Tensor, state: LIFState, params: LIFParams) -> tuple[Tensor, LIFState]:
    """One LIF step: ``current`` and spikes ``(B, n)``; returns ``(spikes, next_state)``."""
    v = params.beta * state.v + current
    spikes = spike_fn(v - params.threshold, params.slope)
    return spikes, LIFState(v * (1.0 - spikes.detach()))


def lif_layer(currents: Tensor, params: LIFParams) -> Tensor:
    """Run a layer over a whole sample: currents ``(T, B, n)`` -> spikes ``(T, B, n)``; ``v_0 = 0``."""
    state = LIFState(torch.zeros_like(currents[0]))
    out = []
    for current in currents:
        spikes, state = lif_step(current, state, params)
        out.append(spikes)
    return torch.stack(out)


def lif_parameter_count(sizes: Sequence[int], *, bias: bool) -> int:
    """Trainable parameters of a dense LIF network with layer ``sizes`` (weights, plus biases if ``bias``)."""
    return sum(n_in * n_out + (n_out if bias else 0) for n_in, n_out in itertools.pairwise(sizes))


def matched_hidden_sizes(sizes: Sequence[int], target: int, *, bias: bool) -> list[int]:
    """Layer sizes with all hidden layers of one width ``h`` whose parameter count is closest to ``target``.

    ``sizes`` gives the input, hidden and output sizes of the network to match (at least one hidden layer);
    its hidden widths are replaced. Ties go to the smaller width. ``|count - target|`` is at most half the
    cost of one hidden unit when one hidden layer is used.
    """
    if len(sizes) < 3:
        raise ValueError("matched_hidden_sizes needs at least one hidden layer in sizes")
    if target < 1:
        raise ValueError(f"target parameter count must be positive, got {target}")

    def with_width(h: int) -> list[int]:
        return [sizes[0], *([h] * (len(sizes) - 2)), sizes[-1]]

    lo, hi = 1, 1
    while lif_parameter_count(with_width(hi), bias=bias) < target:
        hi *= 2
    while lo < hi:  # smallest h with count(h) >= target
        mid = (lo + hi) // 2
        if lif_parameter_count(with_width(mid), bias=bias) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = [h for h in (lo - 1, lo) if h >= 1]
    best = min(candidates, key=lambda h: (abs(lif_parameter_count(with_width(h), bias=bias) - target), h))
    return with_width(best)


@dataclass
class LIFConfig:
    """LIF network layout. ``weight_gain`` scales the uniform(±1/sqrt(fan_in)) initialisation."""

    sizes: list[int] = field(default_factory=lambda: [784, 1000, 10])
    beta: float = 0.9
    threshold: float = 1.0
    slope: float = 5.0
    bias: bool = True
    weight_gain: float = 2.0
    seed: int = 0


class LIFNetwork(SpikingNetwork):
    """Feed-forward LIF SNN; ``forward(x (T, B, sizes[0]), generator)`` returns every layer's spikes.

    The neurons are deterministic, so ``NetworkOutput.probs`` holds the spikes themselves.
    """

    kind = "lif"
    config_class = LIFConfig

    def __init__(self, config: LIFConfig) -> None:
        super().__init__()
        if len(config.sizes) < 2 or min(config.sizes) < 1:
            raise ValueError(f"sizes must list at least two positive layer sizes, got {config.sizes}")
        self.config = config
        self.params = LIFParams(config.beta, config.threshold, config.slope)
        gen = torch.Generator().manual_seed(config.seed)
        self.layers = nn.ModuleList()
        for n_in, n_out in itertools.pairwise(config.sizes):
            layer = nn.Linear(n_in, n_out, bias=config.bias, dtype=torch.float64)
            bound = config.weight_gain / n_in**0.5
            with torch.no_grad():
                layer.weight.copy_((torch.rand(n_out, n_in, generator=gen, dtype=torch.float64) * 2 - 1) * bound)
                if layer.bias is not None:
                    layer.bias.zero_()
            self.layers.append(layer)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> NetworkOutput:
        """``x``: input spikes ``(T, B, sizes[0])``. ``generator`` is unused (the model is deterministic)."""
        spikes: list[Tensor] = []
        h = x
        for layer in self.layers:
            h = lif_layer(layer(h), self.params)
            spikes.append(h)
        return NetworkOutput(spikes=spikes, probs=list(spikes))
