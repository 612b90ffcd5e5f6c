r"""Quantum leaky integrate-and-fire (QLIF) neuron of Brand & Petruccione (npj Quantum Inf. 2024).

One qubit per neuron; its excitation probability :math:`P_1 = (1 - r_z)/2` is the membrane potential.
The qubit state is tracked exactly as a Bloch vector. Every gate and channel here keeps :math:`r_x = 0`
(rotations about x and amplitude damping both map the y-z plane to itself, starting from ``|0>``), so the
state is the pair ``(bloch_y, bloch_z)``; ``|0>`` is (0, 1).

Each layer has two weight matrices. With :math:`a_t = W_q x_t` and :math:`b_t = W_t x_t`, per neuron and step:

* if :math:`a_t > 0`: apply :math:`R_X(\theta)` with :math:`\theta = \pi |a_t|`, i.e. rotate the Bloch vector
  about x: :math:`(r_y, r_z) \to (r_y\cos\theta - r_z\sin\theta,\; r_y\sin\theta + r_z\cos\theta)`;
* otherwise relax by amplitude damping for a time :math:`\tau = 200 |b_t|` with :math:`T_1 = 60`
  (same time units): with :math:`\kappa = e^{-\tau/T_1}` the excited population becomes
  :math:`\kappa P_1` and the coherence shrinks by :math:`\sqrt{\kappa}`:
  :math:`(r_y, r_z) \to (\sqrt{\kappa}\, r_y,\; 1 - \kappa(1 - r_z))`.

The neuron spikes deterministically when :math:`P_1 > 0.75`, after which its qubit is reset to ``|0>``
(the reset carries no gradient). Training is surrogate-gradient BPTT: the Heaviside step on
:math:`P_1 - 0.75` has the fast-sigmoid derivative (:mod:`sqsnn.baselines.surrogate`); the rotation and
relaxation are differentiated exactly. Shapes are time-major: ``(T, B, n)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from sqsnn.baselines.surrogate import spike_fn
from sqsnn.network import NetworkOutput, SpikingNetwork


class QLIFParams(NamedTuple):
    """Fixed neuron constants (times in the units of ``t1``)."""

    threshold: float = 0.75  # excitation probability above which the neuron spikes
    t1: float = 60.0  # amplitude-damping time T1
    tau_scale: float = 200.0  # relaxation time per unit of |W_t x|
    slope: float = 5.0  # surrogate steepness, 1/probability units


class QLIFState(NamedTuple):
    """Bloch components of each neuron's qubit entering a step, each ``(B, n)``."""

    bloch_y: Tensor
    bloch_z: Tensor


def qlif_initial_state(batch: int, n: int, *, dtype: torch.dtype = torch.float64) -> QLIFState:
    """Every qubit in ``|0>``."""
    zeros = torch.zeros(batch, n, dtype=dtype)
    return QLIFState(zeros, torch.ones_like(zeros))


def excitation(state: QLIFState) -> Tensor:
    """Excited-state probability :math:`P_1 = (1 - r_z)/2`, ``(B, n)``."""
    return 0.5 * (1.0 - state.bloch_z)


def qlif_evolve(drive: Tensor, relax: Tensor, state: QLIFState, params: QLIFParams) -> QLIFState:
    """Rotation (where ``drive > 0``) or amplitude damping (elsewhere) of every qubit; inputs ``(B, n)``."""
    theta = math.pi * drive.abs()
    c, s = torch.cos(theta), torch.sin(theta)
    y_rot = state.bloch_y * c - state.bloch_z * s
    z_rot = state.bloch_y * s + state.bloch_z * c
    kappa = torch.exp(-params.tau_scale * relax.abs() / params.t1)
    y_rel = state.bloch_y * torch.sqrt(kappa)
    z_rel = 1.0 - kappa * (1.0 - state.bloch_z)
    rotate = drive > 0
    return QLIFState(torch.where(rotate, y_rot, y_rel), torch.where(rotate, z_rot, z_rel))


def qlif_step(drive: Tensor, relax: Tensor, state: QLIFState, params: QLIFParams) -> tuple[Tensor, Tensor, QLIFState]:
    """One QLIF step of a layer.

    Args:
        drive: :math:`W_q x_t`, ``(B, n)``; rotation angle :math:`\\pi |W_q x_t|` when positive.
        relax: :math:`W_t x_t`, ``(B, n)``; relaxation time :math:`200 |W_t x_t|` otherwise.
        state: qubit Bloch vectors entering the step.
        params: neuron constants.

    Returns:
        ``(spikes, p1, next_state)``: spikes ``(B, n)`` in {0, 1} with the surrogate gradient, the
        excitation probability after the evolution (before any reset), and the state after the reset.
    """
    evolved = qlif_evolve(drive, relax, state, params)
    p1 = excitation(evolved)
    spikes = spike_fn(p1 - params.threshold, params.slope)
    keep = 1.0 - spikes.detach()
    return spikes, p1, QLIFState(evolved.bloch_y * keep, evolved.bloch_z * keep + (1.0 - keep))


@dataclass
class QLIFConfig:
    """QLIF network layout; weights start uniform in ±``weight_gain``/sqrt(fan_in)."""

    sizes: list[int] = field(default_factory=lambda: [784, 1000, 10])
    threshold: float = 0.75
    t1: float = 60.0
    tau_scale: float = 200.0
    slope: float = 5.0
    weight_gain: float = 1.0
    seed: int = 0


class QLIFLayer(nn.Module):
    """A layer of QLIF neurons with rotation weights ``weight_q`` and relaxation weights ``weight_t``."""

    def __init__(self, n_in: int, n_out: int, gain: float, generator: torch.Generator) -> None:
        super().__init__()
        bound = gain / n_in**0.5

        def init() -> nn.Parameter:
            return nn.Parameter((torch.rand(n_out, n_in, generator=generator, dtype=torch.float64) * 2 - 1) * bound)

        self.weight_q = init()
        self.weight_t = init()

    def forward(self, x: Tensor, params: QLIFParams) -> Tensor:
        """Input spikes ``(T, B, n_in)`` -> output spikes ``(T, B, n_out)``; every qubit starts in ``|0>``."""
        drive = x @ self.weight_q.T
        relax = x @ self.weight_t.T
        state = qlif_initial_state(x.shape[1], self.weight_q.shape[0], dtype=x.dtype)
        out = []
        for a, b in zip(drive, relax, strict=True):
            spikes, _, state = qlif_step(a, b, state, params)
            out.append(spikes)
        return torch.stack(out)


class QLIFNetwork(SpikingNetwork):
    """Feed-forward QLIF SNN; deterministic, so ``NetworkOutput.probs`` holds the spikes themselves."""

    kind = "qlif"
    config_class = QLIFConfig

    def __init__(self, config: QLIFConfig) -> None:
        super().__init__()
        if len(config.sizes) < 2 or min(config.sizes) < 1:
            raise ValueError(f"sizes must list at least two positive layer sizes, got {config.sizes}")
        self.config = config
        self.params = QLIFParams(config.threshold, config.t1, config.tau_scale, config.slope)
        gen = torch.Generator().manual_seed(config.seed)
        self.layers = nn.ModuleList(
            QLIFLayer(n_in, n_out, config.weight_gain, gen) for n_in, n_out in itertools.pairwise(config.sizes)
        )

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> NetworkOutput:
        """``x``: input spikes ``(T, B, sizes[0])``. ``generator`` is unused (the model is deterministic)."""
        spikes: list[Tensor] = []
        h = x
        for layer in self.layers:
            h = layer(h, self.params)
            spikes.append(h)
        return NetworkOutput(spikes=spikes, probs=list(spikes))
