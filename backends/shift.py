"""Shot-based probability estimates for the local rule's ``shift`` / ``chain`` / ``official`` estimators,
run through a backend as parameter bindings of the same circuits (hardware-compatible local learning).

:class:`BackendProbability` implements ``sqsnn.training.estimators.ProbabilityFn``: every call (the
unshifted probabilities, or all six parameter-shifted variants at once) is **one submission**: one
T = 1 circuit per chunk of neurons with a prepared memory, one PUB row per (variant, step, sample), S shots
each. How each memory mode maps onto that circuit (exact, not an approximation, *given the memory state*):

* ``quantum``: the memory state entering the step, recorded in the forward pass, is pure with Bloch
  vector ``(0, y, z)`` along an observed spike history; it is prepared as ``RX(alpha)|0>``,
  ``alpha = atan2(-y, z)`` (:func:`backends.compiler.memory_angle`).
* ``memoryless``: memory ``|0>`` (alpha = 0).
* ``official``: ``p = sin^2((phi + theta_mem + theta_in + theta_ent s_prev)/2)`` is the circuit with memory
  ``|s_prev>`` (alpha = pi s_prev) and ``theta_in + theta_mem`` in place of ``theta_in``.

Approximation on hardware: the state ``(y, z)`` comes from the classical record of the forward pass (the
exact engine's Bloch recursion along the observed spikes), not from the QPU's own memory qubit; a QPU
with errors would have drifted from it. :func:`evaluate_variants` is the alternative that needs no
recorded state: full T-step circuits from ``|0>`` for every (theta, W) variant in one submission,
returning the *marginal* per-step spike frequencies (not conditioned on the history).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from backends.common import BaseBackend, derive_seed
from backends.compiler import memory_angle
from backends.meter import SpendMeter
from sqsnn.neuron import MemoryMode, SQSParams, SQSState
from sqsnn.training.estimators import shot_frequency


class BackendProbability:
    """``ProbabilityFn`` whose values are fractions of ``shots`` single-shot runs on ``backend``.

    Frequencies go through :func:`sqsnn.training.estimators.shot_frequency` (0 or S spikes of S reported
    within half a shot of 0 and 1), as the engine's simulated shots do.

    With a ``meter``, every call is priced (:meth:`~backends.common.BaseBackend.estimate`) and charged before
    it is submitted; a call the budget cannot pay raises ``BudgetExceeded`` and submits nothing.
    """

    def __init__(
        self, backend: BaseBackend, shots: int, seed: int | None = None, meter: SpendMeter | None = None
    ) -> None:
        if shots < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        self.backend = backend
        self.shots = shots
        self.seed = seed
        self.meter = meter
        self.submissions = 0  # one per call

    def __call__(self, z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode) -> Tensor:
        """Estimated ``p(s = 1 | state)``; inputs broadcast to ``(..., T, B, n)``, returned in that shape."""
        fields = torch.broadcast_tensors(
            z,
            state.bloch_y,
            state.bloch_z,
            state.last_spike,
            params.theta_ent,
            params.theta_mem,
            params.theta_in,
        )
        zz, y, zb, last, ent, mem, th_in = (f.detach().cpu().to(torch.float64).numpy() for f in fields)
        shape = zz.shape
        n = shape[-1]
        rows = int(np.prod(shape[:-1]))
        if mode == "quantum":
            alpha = memory_angle(y, zb)
        elif mode == "memoryless":
            alpha = np.zeros(shape)
        else:  # official: classical previous spike, theta_mem folded into theta_in
            alpha = np.pi * last
            th_in = th_in + mem
        angles = np.stack([ent, mem, th_in]).reshape(3, rows, n)
        circuit_mode: Any = "memoryless" if mode == "memoryless" else "quantum"
        if self.meter is not None:
            what = f"probabilities of {n} neurons in {rows} prepared-memory rows, {self.shots} shots each"
            self.meter.charge(self.backend.estimate(n, 1, rows, self.shots), what)
        seed = derive_seed(self.seed, self.submissions)
        result = self.backend.run_layer(
            zz.reshape(1, rows, n),
            angles,
            shots=self.shots,
            mode=circuit_mode,
            seed=seed,
            memory_angles=alpha.reshape(rows, n),
        )
        self.submissions += 1
        counts = torch.as_tensor(result.spikes[0].sum(axis=1).reshape(shape), dtype=z.dtype)  # (rows, n) summed shots
        return shot_frequency(counts, self.shots)


def evaluate_variants(
    backend: BaseBackend,
    inputs: Tensor,
    weights: Tensor,
    angles: Tensor,
    *,
    shots: int,
    mode: MemoryMode = "quantum",
    seed: int | None = None,
) -> Tensor:
    """Marginal spike frequencies of V (W, theta) variants of one layer, from one submission.

    Args:
        inputs: presynaptic vector ``u (T, B, P)`` (spikes of the layer below; append a column of ones for
            a bias, the direct input spikes for direct synapses).
        weights: ``(V, n, P)`` synaptic weights of each variant (perturbed for SPSA, or repeated).
        angles: ``(V, 3, n)`` angles (ent, mem, in) of each variant (shifted for parameter shift).
        shots: S single-shot runs per (variant, sample).

    Returns:
        ``(V, T, B, n)``: fraction of the S runs in which each neuron spiked at each step, starting from
        memory ``|0>`` (the marginal over histories).
    """
    steps, batch, _ = inputs.shape
    n_var, n = weights.shape[0], weights.shape[1]
    if angles.shape != (n_var, 3, n):
        raise ValueError(f"angles must be (V={n_var}, 3, n={n}), got {tuple(angles.shape)}")
    z = torch.einsum("tbp,vnp->tvbn", inputs.to(torch.float64), weights.to(torch.float64))
    per_row = angles.to(torch.float64)[:, :, None, :].expand(n_var, 3, batch, n).permute(1, 0, 2, 3)
    result = backend.run_layer(
        z.reshape(steps, n_var * batch, n).numpy(),
        per_row.reshape(3, n_var * batch, n).numpy(),
        shots=shots,
        mode=mode,
        seed=seed,
    )
    freq = result.spikes.mean(axis=2).reshape(steps, n_var, batch, n)
    return torch.as_tensor(freq).permute(1, 0, 2, 3)
