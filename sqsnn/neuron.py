r"""The SQS neuron with one I/O qubit and one memory qubit (N = N_M = 1): the hot path.

Model (``../shared/docs/sqs-model.md`` §1). At step t a neuron receives the classical current
:math:`z_t = \sum_p w_p x_{p,t} (+ b)`. With :math:`\phi = \pi \max(z_t, 0)`,
:math:`a_0 = \phi + \theta_{in}` and :math:`a_1 = a_0 + \theta_{ent}`, and the memory density matrix
:math:`\sigma_t` (``sigma_1 = |0><0|``):

.. math::

    p_t = \sigma_{00} \sin^2(a_0/2) + \sigma_{11} \sin^2(a_1/2)

    A_0 = R_X(\theta_{mem})\,\mathrm{diag}(\cos\tfrac{a_0}{2}, \cos\tfrac{a_1}{2}),\quad
    A_1 = R_X(\theta_{mem})\,\mathrm{diag}(-i\sin\tfrac{a_0}{2}, -i\sin\tfrac{a_1}{2})

    \sigma_{t+1} = A_s \sigma_t A_s^\dagger / p(s)

The memory is stored as its Bloch vector. For this circuit the x component stays 0 (every Kraus operator
is a real diagonal map in the computational basis followed by a rotation about x), so the state is the pair
``(bloch_y, bloch_z)`` with :math:`\sigma_{00} = (1 + z)/2`, :math:`\sigma_{11} = (1 - z)/2`.

Memory modes (§2):

* ``quantum`` — the model above (default).
* ``memoryless`` — the memory is reset to ``|0>`` every step: :math:`p_t = \sin^2(a_0/2)`.
* ``official`` — the reference code's classical neuron,
  :math:`p_t = \sin^2((\phi + \theta_{mem} + \theta_{in} + \theta_{ent} s_{t-1})/2)`, :math:`s_0 = 0`.

Spikes are single-shot samples :math:`s_t = 1[u_t < p_t]` with :math:`u_t` uniform from an explicit
``torch.Generator`` (one ``(B, n)`` draw per step, so :func:`sqs_step` in a loop and :func:`sqs_layer`
give the same spikes). In the backward pass a spike behaves as :math:`\partial s/\partial p = p(1-p)`
(``sigmoid``) or 1 (``straight-through``). The memory update follows the branch that was sampled and is
differentiated exactly in the continuous quantities (angles, currents, previous state); the branch choice
itself and ``official``'s stored previous spike carry no gradient.

Shapes: currents and states are ``(B, n)`` per step, ``(T, B, n)`` over a sample; parameters ``(n,)``.
Angles are in radians.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, get_args

import torch
from torch import Tensor

MemoryMode = Literal["quantum", "memoryless", "official"]
Surrogate = Literal["sigmoid", "straight-through"]
MEMORY_MODES: tuple[str, ...] = get_args(MemoryMode)
SURROGATES: tuple[str, ...] = get_args(Surrogate)


class SQSParams(NamedTuple):
    """Trainable angles of a layer of n neurons, each ``(n,)`` in radians."""

    theta_ent: Tensor
    theta_mem: Tensor
    theta_in: Tensor


class SQSState(NamedTuple):
    """Memory entering a step, each ``(B, n)``.

    ``bloch_y``/``bloch_z`` are the memory qubit's Bloch components (``|0>`` is (0, 1));
    ``last_spike`` is the previous spike (used by mode ``official``; 0 before the first step).
    """

    bloch_y: Tensor
    bloch_z: Tensor
    last_spike: Tensor


def check_mode(mode: str) -> None:
    """Raise a ValueError naming the valid memory modes if ``mode`` is not one of them."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"unknown memory mode {mode!r}; choose one of {', '.join(MEMORY_MODES)}")


def check_surrogate(surrogate: str) -> None:
    """Raise a ValueError naming the valid surrogates if ``surrogate`` is not one of them."""
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; choose one of {', '.join(SURROGATES)}")


def initial_state(
    batch: int, n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> SQSState:
    """Memory reset to ``|0>`` (Bloch (0, 1)) and no previous spike, for ``batch`` samples of ``n`` neurons."""
    zeros = torch.zeros(batch, n, dtype=dtype, device=device)
    return SQSState(zeros, torch.ones_like(zeros), zeros.clone())


def embedding_angle(z: Tensor) -> Tensor:
    """:math:`\\phi = \\pi \\max(z, 0)`, the RX angle that embeds current ``z`` (same shape)."""
    return math.pi * torch.clamp(z, min=0.0)


def spike_probability(z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode) -> Tensor:
    """Probability of a spike this step given the memory ``state``; ``z`` and the result are ``(B, n)``."""
    check_mode(mode)
    phi = embedding_angle(z)
    if mode == "official":
        a = phi + params.theta_mem + params.theta_in + params.theta_ent * state.last_spike
        return torch.sin(0.5 * a) ** 2
    a0 = phi + params.theta_in
    if mode == "memoryless":
        return torch.sin(0.5 * a0) ** 2
    a1 = a0 + params.theta_ent
    return 0.5 * (1 + state.bloch_z) * torch.sin(0.5 * a0) ** 2 + 0.5 * (1 - state.bloch_z) * torch.sin(
        0.5 * a1
    ) ** 2


def _surrogate_slope(p: Tensor, surrogate: Surrogate) -> Tensor:
    """ds/dp used in the backward pass (no gradient of its own)."""
    return p * (1 - p) if surrogate == "sigmoid" else torch.ones_like(p)


def _with_surrogate(hard: Tensor, p: Tensor, surrogate: Surrogate) -> Tensor:
    """Spikes equal to ``hard`` in value whose gradient w.r.t. ``p`` is the surrogate slope."""
    slope = _surrogate_slope(p.detach(), surrogate)
    return hard + slope * (p - p.detach())


def _quantum_update(
    state: SQSState, a0: Tensor, a1: Tensor, spikes: Tensor, theta_mem: Tensor
) -> tuple[Tensor, Tensor]:
    """Memory after observing ``spikes`` (0/1, no gradient): Kraus branch, normalisation, RX(theta_mem)."""
    e0 = torch.where(spikes > 0, torch.sin(0.5 * a0), torch.cos(0.5 * a0))
    e1 = torch.where(spikes > 0, torch.sin(0.5 * a1), torch.cos(0.5 * a1))
    mass0 = e0 * e0 * 0.5 * (1 + state.bloch_z)
    mass1 = e1 * e1 * 0.5 * (1 - state.bloch_z)
    norm = mass0 + mass1
    z_pre = (mass0 - mass1) / norm
    y_pre = e0 * e1 * state.bloch_y / norm
    cm, sm = torch.cos(theta_mem), torch.sin(theta_mem)
    return y_pre * cm - z_pre * sm, y_pre * sm + z_pre * cm


def next_state(z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode, spikes: Tensor) -> SQSState:
    """Memory after observing ``spikes`` (``(B, n)``, 0/1; treated as constants) at currents ``z``."""
    check_mode(mode)
    hard = spikes.detach()
    if mode != "quantum":
        return SQSState(state.bloch_y, state.bloch_z, hard)
    a0 = embedding_angle(z) + params.theta_in
    y, zb = _quantum_update(state, a0, a0 + params.theta_ent, hard, params.theta_mem)
    return SQSState(y, zb, hard)


def sqs_step(
    z: Tensor,
    state: SQSState,
    params: SQSParams,
    mode: MemoryMode,
    generator: torch.Generator | None,
    surrogate: Surrogate = "sigmoid",
) -> tuple[Tensor, Tensor, SQSState]:
    """One single-shot step of a layer of SQS neurons (plain autograd; the reference for :func:`sqs_layer`).

    Args:
        z: input currents ``(B, n)``.
        state: memory entering the step (see :class:`SQSState`).
        params: the layer's angles, each ``(n,)``.
        mode: memory mode.
        generator: source of the single-shot randomness (one uniform ``(B, n)`` draw).
        surrogate: backward rule for ds/dp.

    Returns:
        ``(spikes, p, next_state)``: spikes ``(B, n)`` in {0, 1} carrying the surrogate gradient, spike
        probabilities ``(B, n)``, and the memory for the next step.
    """
    check_surrogate(surrogate)
    p = spike_probability(z, state, params, mode)
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype, device=p.device)
    hard = (u < p.detach()).to(p.dtype)
    return _with_surrogate(hard, p, surrogate), p, next_state(z, state, params, mode, hard)


class _SQSLayerFn(torch.autograd.Function):
    """Whole-sample SQS layer with a hand-written backward pass (BPTT through the memory)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        z: Tensor,
        theta_ent: Tensor,
        theta_mem: Tensor,
        theta_in: Tensor,
        mode: str,
        surrogate: str,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        steps, batch, n = z.shape
        active = z > 0
        phi = math.pi * torch.where(active, z, torch.zeros((), dtype=z.dtype))
        spikes = torch.empty_like(z)
        probs = torch.empty_like(z)
        if mode == "official":
            last = torch.zeros(batch, n, dtype=z.dtype, device=z.device)
            base = phi + (theta_mem + theta_in)
            angle = torch.empty_like(z)
            for t in range(steps):
                angle[t] = base[t] + theta_ent * last
                p = torch.sin(0.5 * angle[t]).square_()
                probs[t] = p
                last = (torch.rand(p.shape, generator=generator, dtype=z.dtype, device=z.device) < p).to(z.dtype)
                spikes[t] = last
            ctx.save_for_backward(active, angle, probs, spikes)
        elif mode == "memoryless":
            angle = phi + theta_in
            torch.sin(0.5 * angle, out=probs).square_()
            u = torch.stack(
                [torch.rand((batch, n), generator=generator, dtype=z.dtype, device=z.device) for _ in range(steps)]
            )
            spikes = (u < probs).to(z.dtype)
            ctx.save_for_backward(active, angle, probs, spikes)
        else:
            a0 = phi + theta_in
            h0 = 0.5 * a0
            h1 = h0 + 0.5 * theta_ent
            sin0, cos0, sin1, cos1 = torch.sin(h0), torch.cos(h0), torch.sin(h1), torch.cos(h1)
            pk0, pk1 = sin0.square(), sin1.square()
            ys = torch.empty_like(z)
            zs = torch.empty_like(z)
            yp_all = torch.empty_like(z)
            zp_all = torch.empty_like(z)
            norms = torch.empty_like(z)
            cm, sm = torch.cos(theta_mem), torch.sin(theta_mem)
            y = torch.zeros(batch, n, dtype=z.dtype, device=z.device)
            zb = torch.ones_like(y)
            for t in range(steps):
                ys[t], zs[t] = y, zb
                q0 = 0.5 * (1 + zb)
                q1 = 1 - q0
                p = q0 * pk0[t] + q1 * pk1[t]
                probs[t] = p
                fired = torch.rand(p.shape, generator=generator, dtype=z.dtype, device=z.device) < p
                spikes[t] = fired
                e0 = torch.where(fired, sin0[t], cos0[t])
                e1 = torch.where(fired, sin1[t], cos1[t])
                m0 = e0 * e0 * q0
                m1 = e1 * e1 * q1
                norm = m0 + m1
                z_pre = (m0 - m1) / norm
                y_pre = e0 * e1 * y / norm
                norms[t], yp_all[t], zp_all[t] = norm, y_pre, z_pre
                y = y_pre * cm - z_pre * sm
                zb = y_pre * sm + z_pre * cm
            ctx.save_for_backward(
                active, spikes, probs, sin0, cos0, sin1, cos1, ys, zs, yp_all, zp_all, norms, theta_mem
            )
        ctx.mode = mode
        ctx.surrogate = surrogate
        return spikes, probs

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor, g_probs: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        mode: str = ctx.mode
        saved = ctx.saved_tensors
        active = saved[0]
        if mode in ("official", "memoryless"):
            _, angle, probs, spikes = saved
            g_angle = (g_probs + g_spikes * _surrogate_slope(probs, ctx.surrogate)) * 0.5 * torch.sin(angle)
            g_z = math.pi * g_angle * active
            g_in = g_angle.sum(dim=(0, 1))
            if mode == "memoryless":
                return g_z, torch.zeros_like(g_in), torch.zeros_like(g_in), g_in, None, None, None
            # official: theta_ent multiplies the stored previous spike, which carries no gradient itself
            g_ent = (g_angle[1:] * spikes[:-1]).sum(dim=(0, 1))
            return g_z, g_ent, g_in, g_in, None, None, None
        (_, spikes, probs, sin0, cos0, sin1, cos1, ys, zs, yp_all, zp_all, norms, theta_mem) = saved
        steps = spikes.shape[0]
        g_p_all = g_probs + g_spikes * _surrogate_slope(probs, ctx.surrogate)
        cm, sm = torch.cos(theta_mem), torch.sin(theta_mem)
        g_a0 = torch.empty_like(probs)
        g_a1 = torch.empty_like(probs)
        g_mem = torch.zeros_like(theta_mem)
        g_y = torch.zeros_like(probs[0])
        g_zb = torch.zeros_like(probs[0])
        for t in range(steps - 1, -1, -1):
            fired = spikes[t] > 0
            y, zb = ys[t], zs[t]
            y_pre, z_pre, norm = yp_all[t], zp_all[t], norms[t]
            # rotation RX(theta_mem) of the Bloch (y, z) pair
            y_next = y_pre * cm - z_pre * sm
            z_next = y_pre * sm + z_pre * cm
            g_mem += (g_zb * y_next - g_y * z_next).sum(dim=0)
            g_ypre = g_y * cm + g_zb * sm
            g_zpre = g_zb * cm - g_y * sm
            # normalisation: z_pre = (m0 - m1)/norm, y_pre = e0 e1 y / norm, norm = m0 + m1
            e0 = torch.where(fired, sin0[t], cos0[t])
            e1 = torch.where(fired, sin1[t], cos1[t])
            g_norm = -(g_ypre * y_pre + g_zpre * z_pre) / norm
            g_m0 = g_zpre / norm + g_norm
            g_m1 = g_norm - g_zpre / norm
            q0 = 0.5 * (1 + zb)
            q1 = 1 - q0
            g_e0 = g_ypre * e1 * y / norm + 2 * e0 * q0 * g_m0
            g_e1 = g_ypre * e0 * y / norm + 2 * e1 * q1 * g_m1
            g_q0 = g_m0 * e0 * e0
            g_q1 = g_m1 * e1 * e1
            g_y = g_ypre * e0 * e1 / norm
            # probability p = q0 sin^2(h0) + q1 sin^2(h1)
            g_p = g_p_all[t]
            g_q0 = g_q0 + g_p * sin0[t] * sin0[t]
            g_q1 = g_q1 + g_p * sin1[t] * sin1[t]
            g_zb = 0.5 * (g_q0 - g_q1)
            # d e/d h: sin -> cos, cos -> -sin; d/d a = 1/2 d/d h
            de0 = torch.where(fired, cos0[t], -sin0[t])
            de1 = torch.where(fired, cos1[t], -sin1[t])
            g_a0[t] = 0.5 * (g_e0 * de0 + 2 * g_p * q0 * sin0[t] * cos0[t])
            g_a1[t] = 0.5 * (g_e1 * de1 + 2 * g_p * q1 * sin1[t] * cos1[t])
        g_phi = g_a0 + g_a1
        g_z = math.pi * g_phi * active
        g_in = g_phi.sum(dim=(0, 1))
        g_ent = g_a1.sum(dim=(0, 1))
        return g_z, g_ent, g_mem, g_in, None, None, None


def sqs_layer(
    z: Tensor,
    params: SQSParams,
    mode: MemoryMode,
    generator: torch.Generator | None,
    surrogate: Surrogate = "sigmoid",
) -> tuple[Tensor, Tensor]:
    """Run a layer of n SQS neurons over a whole sample, memory reset to ``|0>`` at the start.

    Equal in value and gradient to :func:`sqs_step` applied T times (same generator draws), but with a
    hand-written backward pass through time, which is several times faster than plain autograd.

    Args:
        z: input currents ``(T, B, n)``.
        params: angles, each ``(n,)``.
        mode: memory mode.
        generator: source of the single-shot randomness.
        surrogate: backward rule for ds/dp.

    Returns:
        ``(spikes, p)``, both ``(T, B, n)``: single-shot spikes in {0, 1} (surrogate gradient) and the spike
        probability of every step given the sampled history.
    """
    check_mode(mode)
    check_surrogate(surrogate)
    if z.dim() != 3:
        raise ValueError(f"z must be (T, B, n); got shape {tuple(z.shape)}")
    spikes, probs = _SQSLayerFn.apply(
        z, params.theta_ent, params.theta_mem, params.theta_in, mode, surrogate, generator
    )
    return spikes, probs


def spike_train_distribution(z: Tensor, params: SQSParams, mode: MemoryMode) -> Tensor:
    """Exact probability of every spike train of ``n`` independent neurons (the test oracle).

    Branches the unnormalised memory over all outcomes. ``quantum`` uses the general Kraus engine
    (:mod:`sqsnn.kraus`), not the Bloch recursion of :func:`sqs_layer`.

    Args:
        z: currents ``(T, n)``; params: angles ``(n,)``.

    Returns:
        ``(2**T, n)``; row ``k`` is the train whose spike at step t is bit ``(k >> t) & 1``.
    """
    check_mode(mode)
    steps, n = z.shape
    if mode == "quantum":
        from sqsnn.kraus import GeneralParams, joint_distribution

        general = GeneralParams(
            theta_ent=params.theta_ent.reshape(n, 1, 1, 1),
            theta_mem=params.theta_mem.reshape(n, 1, 1),
            theta_in=params.theta_in.reshape(n, 1, 1),
        )
        return joint_distribution(z.T.unsqueeze(-1), general).T
    weights = torch.ones(1, n, dtype=z.dtype, device=z.device)
    last = torch.zeros(1, n, dtype=z.dtype, device=z.device)
    zeros = torch.zeros_like(last)
    for t in range(steps):
        state = SQSState(zeros, torch.ones_like(zeros), last)
        p = spike_probability(z[t].expand_as(last), state, params, mode)
        weights = torch.cat([weights * (1 - p), weights * p])
        last = torch.cat([torch.zeros_like(last), torch.ones_like(last)])
    # rows were built with the newest step as the most significant bit: index = sum_t s_t 2^t
    return weights
