r"""Per-neuron gradient estimators of the local learning rule (``sqs-model.md`` §4.2).

Every estimator returns the gradient of one layer's local objective

.. math::

    J(W, \theta) = \sum_{t, b, n} c_{t,b,n}\, \log p\big(s_{t,b,n} \,\big|\, z_{t,b,n}, \sigma_{t,b,n};
    \theta_n\big), \qquad z_{t,b,n} = \sum_q W_{n,q}\, u_{t,b,q},

where ``u (T, B, P)`` is the layer's presynaptic vector (spikes of the layer below, a column of ones for the
bias, then the direct input spikes), ``sigma`` the memory state entering each step (recorded during the
forward pass and treated as fixed), ``s`` the target spikes (labels for output neurons, emitted spikes for
hidden ones) and ``c`` the coefficient of each term (1/B for outputs; the centred learning signal / B for
hidden neurons). Each neuron's log-probability depends only on its own row of ``W`` and its own angles, so
``dJ/dW_n`` is that neuron's local gradient: no gradient crosses a layer.

Estimators (what each approximates):

* :func:`exact_gradient` — autograd of ``J`` with inputs and memory state detached: the exact gradient of
  each neuron's log-probability *given its current memory state* (it ignores how the angles shaped that
  state; in mode ``quantum`` ``theta_mem`` acts only after the measurement, so its gradient is 0).
* :func:`shift_angle_gradient` — parameter shift :math:`\partial p/\partial\theta = [p(\theta+\pi/2) -
  p(\theta-\pi/2)]/2`, exact for all three angles of this circuit given the state (p is a unit-frequency
  sinusoid in each), then :math:`\partial \log p(s) = (s/p - (1-s)/(1-p))\, \partial p`.
* :func:`spsa_weight_gradient` — SPSA over the weights with K random ±1 directions per neuron and step c;
  unbiased up to :math:`O(c^2)`.
* :func:`chain_weight_gradient` — the exact identity :math:`\partial p/\partial W_{n,q} = \pi\, u_q\,
  1[z_n > 0]\, \partial p/\partial\theta_{in,n}` (``p`` depends on the embedding angle and ``theta_in`` only
  through their sum), using the shifted ``dp/dtheta_in``.
* :func:`official_gradient` — the reference code's recipe: probabilities of a *fresh* neuron (memory reset,
  no previous spike) for every estimate; parameter shift applied to ``log p``; SPSA on each synapse group
  separately with the perturbation ``c * Delta`` (so the estimate is c times the usual SPSA estimate), fresh
  directions for every step and sample, and each group's current computed from that group alone.

Probabilities are evaluated through a pluggable :data:`ProbabilityFn` (default: the exact closed form; a
backend can supply shot-based estimates from a simulator or a QPU). Every call receives *all* shifted or
perturbed variants at once, stacked along leading dimensions, so a backend can submit them as one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from sqsnn.neuron import MemoryMode, SQSParams, SQSState, initial_state, spike_probability

ProbabilityFn = Callable[[Tensor, SQSState, SQSParams, MemoryMode], Tensor]
"""``(z, state, params, mode) -> p``: spike probabilities evaluated elementwise.

``z`` is ``(..., T, B, n)``; the state fields are ``(T, B, n)``; the parameter fields are ``(n,)`` or carry
leading dimensions for shifted variants (e.g. ``(V, 1, 1, n)``). All broadcast together; the result has the
broadcast shape. Implementations may return estimates (e.g. a fraction of S shots).
"""

PROB_FLOOR = 1e-10  # probabilities are clamped to [PROB_FLOOR, 1 - PROB_FLOOR] before taking logs
HALF_PI = 0.5 * math.pi
ANGLES = ("theta_ent", "theta_mem", "theta_in")


def exact_probability(z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode) -> Tensor:
    """The exact closed-form spike probability (the default :data:`ProbabilityFn`)."""
    return spike_probability(z, state, params, mode)


def shot_frequency(counts: Tensor, shots: int) -> Tensor:
    """Spike frequency of ``counts`` spikes in ``shots`` single-shot runs, kept within half a shot of 0 and 1.

    A frequency of 0 (or S) of S shots is reported as ``1/(2S)`` (or ``1 - 1/(2S)``), within the estimate's
    resolution of it: the local rule divides by ``p`` and ``1 - p`` (``d log p / dp``), and a raw 0 turns one
    unlucky estimate into a 1e10 gradient that stalls Adam; the clamp bounds that factor by 2S. Same shape
    as ``counts``.
    """
    half = 0.5 / shots
    return (counts / shots).clamp(half, 1.0 - half)


class ShotProbability:
    """A :data:`ProbabilityFn` that returns the frequency of spikes in ``shots`` single-shot runs.

    Simulates what a QPU returns: ``Binomial(shots, p)`` spikes with the exact ``p``, drawn from
    ``generator``, as a :func:`shot_frequency` (the same estimate a circuit backend reports).
    """

    def __init__(self, shots: int, generator: torch.Generator) -> None:
        if shots < 1:
            raise ValueError(f"shots must be >= 1 for a shot-based estimate, got {shots}")
        self.shots = shots
        self.generator = generator

    def __call__(self, z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode) -> Tensor:
        p = spike_probability(z, state, params, mode).clamp(0.0, 1.0)
        counts = torch.binomial(torch.full_like(p, float(self.shots)), p, generator=self.generator)
        return shot_frequency(counts, self.shots)


class LocalObjective(NamedTuple):
    """One layer's local objective (see module docstring); ``T, B, n, P`` as there."""

    inputs: Tensor  # u (T, B, P)
    state: SQSState  # memory entering each step, fields (T, B, n)
    targets: Tensor  # s (T, B, n), 0/1
    coef: Tensor  # c (T, B, n) (or broadcastable)


class LayerGradient(NamedTuple):
    """dJ for one layer: ``weight (n, P)`` (columns as in ``LocalObjective.inputs``) and angles ``(n,)``."""

    weight: Tensor
    theta_ent: Tensor
    theta_mem: Tensor
    theta_in: Tensor


def log_prob(p: Tensor, s: Tensor) -> Tensor:
    """:math:`\\log p(s) = s \\log p + (1-s) \\log(1-p)` with ``p`` clamped away from 0 and 1."""
    p = p.clamp(PROB_FLOOR, 1.0 - PROB_FLOOR)
    return s * torch.log(p) + (1.0 - s) * torch.log1p(-p)


def dlogp_dp(p: Tensor, s: Tensor) -> Tensor:
    """:math:`\\partial \\log p(s) / \\partial p = s/p - (1-s)/(1-p)` with ``p`` clamped away from 0 and 1."""
    p = p.clamp(PROB_FLOOR, 1.0 - PROB_FLOOR)
    return s / p - (1.0 - s) / (1.0 - p)


def currents(inputs: Tensor, weight: Tensor) -> Tensor:
    """``z = u W^T``: ``(T, B, P) x (n, P) -> (T, B, n)``."""
    return inputs @ weight.T


def shifted_params(params: SQSParams, shift: float) -> SQSParams:
    """Six variants stacked as ``(6, 1, 1, n)``: (ent+, ent-, mem+, mem-, in+, in-) shifted by ``±shift``."""
    variants = [
        params._replace(**{name: getattr(params, name) + sign * shift}) for name in ANGLES for sign in (1.0, -1.0)
    ]
    return SQSParams(*(torch.stack([getattr(v, f) for v in variants])[:, None, None, :] for f in ANGLES))


def exact_gradient(obj: LocalObjective, weight: Tensor, params: SQSParams, mode: MemoryMode) -> LayerGradient:
    """Autograd of ``J`` with the inputs and memory state held fixed (see module docstring)."""
    with torch.enable_grad():
        w = weight.detach().requires_grad_(True)
        angles = [getattr(params, name).detach().requires_grad_(True) for name in ANGLES]
        state = SQSState(*(f.detach() for f in obj.state))
        p = spike_probability(currents(obj.inputs.detach(), w), state, SQSParams(*angles), mode)
        objective = (obj.coef * log_prob(p, obj.targets)).sum()
        leaves = [w, *angles]
        grads = torch.autograd.grad(objective, leaves, allow_unused=True)
    return LayerGradient(*(torch.zeros_like(v) if g is None else g for g, v in zip(grads, leaves, strict=True)))


class AngleShift(NamedTuple):
    """Result of :func:`shift_angle_gradient`."""

    theta_ent: Tensor  # dJ/dtheta_ent (n,)
    theta_mem: Tensor
    theta_in: Tensor
    weighted_dp_dtheta_in: Tensor  # c * dlogp/dp * dp/dtheta_in, (T, B, n): what the chain rule needs


def shift_angle_gradient(
    obj: LocalObjective, weight: Tensor, params: SQSParams, mode: MemoryMode, probability: ProbabilityFn
) -> AngleShift:
    """Parameter-shift gradient of ``J`` with respect to the three angles (7 probability evaluations)."""
    z = currents(obj.inputs, weight)
    p = probability(z, obj.state, params, mode)
    shifted = probability(z, obj.state, shifted_params(params, HALF_PI), mode)  # (6, T, B, n)
    dp = 0.5 * (shifted[0::2] - shifted[1::2])  # (3, T, B, n): ent, mem, in
    scale = obj.coef * dlogp_dp(p, obj.targets)
    per_term = scale * dp
    g = per_term.sum(dim=(1, 2))
    return AngleShift(g[0], g[1], g[2], per_term[2])


def chain_weight_gradient(obj: LocalObjective, weight: Tensor, weighted_dp_dtheta_in: Tensor) -> Tensor:
    """dJ/dW by the chain rule: dp/dW[n, q] = pi * u[q] * 1[z_n > 0] * dp/dtheta_in[n]."""
    active = (currents(obj.inputs, weight) > 0).to(weight.dtype)
    return math.pi * torch.einsum("tbn,tbq->nq", weighted_dp_dtheta_in * active, obj.inputs)


def draw_signs(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """Independent Rademacher (±1 with probability 1/2 each) entries of the given shape."""
    return torch.randint(0, 2, tuple(shape), generator=generator).to(dtype) * 2 - 1


def spsa_weight_gradient(
    obj: LocalObjective,
    weight: Tensor,
    params: SQSParams,
    mode: MemoryMode,
    probability: ProbabilityFn,
    directions: Tensor,
    step: float,
) -> Tensor:
    """SPSA estimate of dJ/dW: ``(1/K) sum_k [J_n(W + c D_k) - J_n(W - c D_k)] / (2c) D_k`` per neuron n.

    ``directions``: ``(K, n, P)`` ±1 (one direction per neuron, shared by the batch); ``step`` is c.
    """
    z = currents(obj.inputs, weight)
    dz = step * torch.einsum("tbq,knq->ktbn", obj.inputs, directions)
    p = probability(torch.cat([z + dz, z - dz]), obj.state, params, mode)  # (2K, T, B, n)
    f = (obj.coef * log_prob(p, obj.targets)).sum(dim=(1, 2))  # (2K, n)
    k = directions.shape[0]
    slope = (f[:k] - f[k:]) / (2.0 * step)  # (K, n)
    return (slope[:, :, None] * directions).mean(dim=0)


def official_gradient(
    obj: LocalObjective,
    weight: Tensor,
    params: SQSParams,
    mode: MemoryMode,
    probability: ProbabilityFn,
    groups: Sequence[slice],
    directions: Sequence[Tensor],
    step: float,
) -> LayerGradient:
    """The reference recipe's estimate of dJ (see module docstring).

    Args:
        groups: column blocks of ``obj.inputs`` perturbed separately (the reference: synapses from the layer
            below, then the direct synapses).
        directions: one ``(K, T, B, n, P_g)`` ±1 tensor per group (fresh for every step and sample).
        step: the SPSA step c (the reference's epsilon).
    """
    t_steps, batch, n = obj.targets.shape
    fresh = initial_state(t_steps * batch, n, dtype=weight.dtype)
    fresh = SQSState(*(f.reshape(t_steps, batch, n) for f in fresh))
    z = currents(obj.inputs, weight)
    shifted = probability(z, fresh, shifted_params(params, HALF_PI), mode)
    lp = log_prob(shifted, obj.targets)
    angle = (obj.coef * 0.5 * (lp[0::2] - lp[1::2])).sum(dim=(1, 2))
    grad_w = torch.zeros_like(weight)
    for cols, delta in zip(groups, directions, strict=True):
        u = obj.inputs[..., cols]
        z_g = currents(u, weight[:, cols])
        dz = step * torch.einsum("ktbnq,tbq->ktbn", delta, u)
        p = probability(torch.cat([z_g + dz, z_g - dz]), fresh, params, mode)
        lp_w = log_prob(p, obj.targets)
        k = delta.shape[0]
        # (lp+ - lp-) / (2c) times the perturbation c * Delta, averaged over the K directions
        per_dir = obj.coef * 0.5 * (lp_w[:k] - lp_w[k:])
        grad_w[:, cols] = torch.einsum("ktbn,ktbnq->nq", per_dir, delta) / k
    return LayerGradient(grad_w, angle[0], angle[1], angle[2])
