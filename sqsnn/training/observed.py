r"""Spikes observed on a backend, and the memory they leave behind (hardware-in-the-loop forward pass).

A :class:`SpikeSource` runs one layer single-shot somewhere else (a simulator, a QPU) and returns only the
spikes. The memory state each neuron entered every step with, which the local rule's estimators need, is
then rebuilt classically along the *observed* spikes by the model's own Kraus update
(:func:`sqsnn.neuron.next_state`): :func:`follow_observed`.

Robust readout: a real device can report an outcome the ideal model forbids (ideal probability below
:data:`IMPOSSIBLE_P`, e.g. a spike with ``phi + theta_in = 0`` and the memory in ``|0>``). The Kraus update
of that outcome divides 0 by 0. Such an outcome can only come from a device error (a readout flip, a gate
error), so the memory is updated along the *opposite* outcome, the one the model expected with probability
``> 1 - IMPOSSIBLE_P`` (a readout-error model), and the event is counted (:class:`ReadoutTally`). Every
updated Bloch vector is then renormalised to unit length: along an observed history the memory is a pure
state, and renormalising clamps the rounding drift of long histories. Nothing produced here is NaN or inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from sqsnn.neuron import MemoryMode, SQSParams, SQSState, initial_state, next_state, spike_probability

IMPOSSIBLE_P = 1e-12
"""An observed outcome whose ideal probability is below this is counted as impossible under the model."""


class SpikeSource(Protocol):
    """Runs one layer single-shot and returns its spikes.

    ``z``: input currents ``(T, B, n)``; ``params``: the layer's angles, each ``(n,)`` (radians); ``mode``:
    memory mode. Returns spikes ``(T, B, n)`` of 0.0 / 1.0, every neuron's memory starting at ``|0>``.
    """

    def __call__(self, z: Tensor, params: SQSParams, mode: MemoryMode) -> Tensor: ...


@dataclass
class ReadoutTally:
    """Observed spike outcomes (``observed``) and how many the ideal model gave probability below
    :data:`IMPOSSIBLE_P` (``impossible``)."""

    impossible: int = 0
    observed: int = 0

    def add(self, impossible: int, observed: int) -> None:
        self.impossible += impossible
        self.observed += observed


class ObservedTrajectory(NamedTuple):
    """Memory states and ideal probabilities along an observed spike history (see :func:`follow_observed`)."""

    state: SQSState  # memory entering each step, fields (T, B, n)
    probs: Tensor  # ideal p(s_t = 1 | observed s_<t), (T, B, n)
    impossible: int  # outcomes with ideal probability < IMPOSSIBLE_P


def _unit(state: SQSState) -> SQSState:
    """The state with its Bloch vector ``(y, z)`` scaled to unit length (pure memory)."""
    norm = torch.sqrt(state.bloch_y**2 + state.bloch_z**2)
    return SQSState(state.bloch_y / norm, state.bloch_z / norm, state.last_spike)


def follow_observed(z: Tensor, params: SQSParams, mode: MemoryMode, spikes: Tensor) -> ObservedTrajectory:
    """Replay ``spikes (T, B, n)`` observed at currents ``z (T, B, n)`` through the ideal model.

    Returns the memory entering every step (starting at ``|0>``), the ideal per-step spike probability given
    the observed history, and the number of impossible outcomes (module docstring: how they update the memory).
    """
    steps, batch, n = z.shape
    state = initial_state(batch, n, dtype=z.dtype, device=z.device)
    states, probs = [], []
    impossible = 0
    for t in range(steps):
        states.append(state)
        p = spike_probability(z[t], state, params, mode)
        s = spikes[t].to(z.dtype)
        forbidden = torch.where(s > 0, p, 1.0 - p) < IMPOSSIBLE_P
        impossible += int(forbidden.sum())
        probs.append(p)
        state = next_state(z[t], state, params, mode, torch.where(forbidden, 1.0 - s, s))
        if mode == "quantum":
            state = _unit(state)
        state = state._replace(last_spike=s)
    stacked = SQSState(*(torch.stack(field) for field in zip(*states, strict=True)))
    return ObservedTrajectory(stacked, torch.stack(probs), impossible)
