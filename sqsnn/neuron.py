r"""The SQS neuron with one I/O qubit and one memory qubit (N = N_M = 1): the hot path.

Model (``docs/model.md``). At step t a neuron receives the classical current
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


def embedding_angle(z: Tensor, leak: float = 0.0) -> Tensor:
    """:math:`\\phi = \\pi \\max(z, 0)`, the RX angle that embeds current ``z`` (same shape).

    Gradient convention (shared by the fused kernels and the local rule's estimators):
    :math:`\\partial \\max(z, 0) / \\partial z = 1[z > 0]`, so 0 at ``z = 0`` exactly (``torch.relu``'s
    convention; ``torch.clamp`` would pass 1 there). ``leak > 0`` is a surrogate for training: the value is
    unchanged but the backward pass uses the slope ``leak`` for ``z <= 0``, so a neuron whose currents all
    went negative still receives gradient.
    """
    phi = math.pi * torch.relu(z)
    if leak:
        below = torch.clamp(z, max=0.0)  # gradient 1 for z <= 0 (clamp passes it at the boundary)
        phi = phi + math.pi * leak * (below - below.detach())
    return phi


def spike_probability(z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode, *, leak: float = 0.0) -> Tensor:
    """Probability of a spike this step given the memory ``state``; ``z`` and the result are ``(B, n)``.
    ``leak``: the embedding's backward slope for ``z <= 0`` (:func:`embedding_angle`)."""
    check_mode(mode)
    phi = embedding_angle(z, leak)
    if mode == "official":
        a = phi + params.theta_mem + params.theta_in + params.theta_ent * state.last_spike
        return torch.sin(0.5 * a) ** 2
    a0 = phi + params.theta_in
    if mode == "memoryless":
        return torch.sin(0.5 * a0) ** 2
    a1 = a0 + params.theta_ent
    return 0.5 * (1 + state.bloch_z) * torch.sin(0.5 * a0) ** 2 + 0.5 * (1 - state.bloch_z) * torch.sin(0.5 * a1) ** 2


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


def next_state(
    z: Tensor, state: SQSState, params: SQSParams, mode: MemoryMode, spikes: Tensor, *, leak: float = 0.0
) -> SQSState:
    """Memory after observing ``spikes`` (``(B, n)``, 0/1; treated as constants) at currents ``z``."""
    check_mode(mode)
    hard = spikes.detach()
    if mode != "quantum":
        return SQSState(state.bloch_y, state.bloch_z, hard)
    a0 = embedding_angle(z, leak) + params.theta_in
    y, zb = _quantum_update(state, a0, a0 + params.theta_ent, hard, params.theta_mem)
    return SQSState(y, zb, hard)


def sqs_step(
    z: Tensor,
    state: SQSState,
    params: SQSParams,
    mode: MemoryMode,
    generator: torch.Generator | None,
    surrogate: Surrogate = "sigmoid",
    *,
    leak: float = 0.0,
) -> tuple[Tensor, Tensor, SQSState]:
    """One single-shot step of a layer of SQS neurons (plain autograd; the reference for :func:`sqs_layer`).

    Args:
        z: input currents ``(B, n)``.
        state: memory entering the step (see :class:`SQSState`).
        params: the layer's angles, each ``(n,)``.
        mode: memory mode.
        generator: source of the single-shot randomness (one uniform ``(B, n)`` draw).
        surrogate: backward rule for ds/dp.
        leak: backward slope of the embedding for ``z <= 0`` (:func:`embedding_angle`; 0: exact).

    Returns:
        ``(spikes, p, next_state)``: spikes ``(B, n)`` in {0, 1} carrying the surrogate gradient, spike
        probabilities ``(B, n)``, and the memory for the next step.
    """
    check_surrogate(surrogate)
    p = spike_probability(z, state, params, mode, leak=leak)
    from sqsnn import kernels

    u = kernels.draw_uniforms((1, *p.shape), generator, kernel_dtype(p.dtype))[0].to(p.device)
    hard = (u < p.detach().to(u.dtype)).to(p.dtype)
    return _with_surrogate(hard, p, surrogate), p, next_state(z, state, params, mode, hard, leak=leak)


def kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the fused kernels compute in for tensors of ``dtype``: float32 stays, others are float64."""
    return torch.float32 if dtype == torch.float32 else torch.float64


class _Trajectory(NamedTuple):
    """What :func:`_kernel_forward` returns: the sampled layer and what its backward pass needs."""

    spikes: Tensor  # (T, B, n)
    probs: Tensor  # (T, B, n)
    bloch_y: Tensor  # (T, B, n) memory entering each step when recorded (mode quantum), else empty
    bloch_z: Tensor
    saved: tuple[Any, ...]  # numpy arrays: z, fired, offset_half, ce, se, cm, sm


def _kernel_forward(z: Tensor, params: SQSParams, mode: str, u: Tensor, record: bool) -> _Trajectory:
    """Forward pass of a whole sample on the CPU (:func:`sqsnn.kernels.neuron_forward`) in
    ``kernel_dtype(z.dtype)``, spikes decided by the uniforms ``u (T, B, n)`` (any floating dtype)."""
    from sqsnn import kernels

    kernels.match_torch_threads()
    dtype = kernel_dtype(z.dtype)
    te, tm, ti = (a.detach().to(torch.float64) for a in params)
    offset_half = (0.5 * (tm + ti if mode == "official" else ti)).to(dtype).contiguous().numpy()
    per_neuron = [
        f.to(dtype).contiguous().numpy() for f in (torch.cos(0.5 * te), torch.sin(0.5 * te), tm.cos(), tm.sin())
    ]
    z_np = z.detach().to(dtype).contiguous().numpy()
    spikes, probs, fired, ys, zs, out_of_range = kernels.neuron_forward(
        z_np, u.detach().contiguous().numpy(), offset_half, *per_neuron, kernels.MODE_CODES[mode], record
    )
    if out_of_range:
        limit = kernels.ANGLE_LIMIT_FLOAT32 if dtype == torch.float32 else kernels.ANGLE_LIMIT
        raise ValueError(
            f"{out_of_range} currents are not finite or give an angle beyond {limit:g} rad "
            "(pi * max(z, 0) / 2 + the neuron's offset)"
        )
    saved = (z_np, fired, offset_half, *per_neuron)
    tensors = [torch.from_numpy(a) for a in (spikes, probs, ys, zs)]
    return _Trajectory(tensors[0], tensors[1], tensors[2], tensors[3], saved)


def _kernel_backward(
    saved: tuple[Any, ...], g_spikes: Tensor | None, g_probs: Tensor | None, mode: str, surrogate: str, leak: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """BPTT through :func:`_kernel_forward`'s trajectory: ``(g_z (T, B, n), g_theta_ent, g_theta_mem,
    g_theta_in)`` (each angle ``(n,)``), in the kernels' dtype; a missing gradient counts as 0."""
    from sqsnn import kernels

    kernels.match_torch_threads()
    z_np, fired, offset_half, ce, se, cm, sm = saved
    dtype = torch.from_numpy(z_np[:0]).dtype
    g_s = torch.zeros(z_np.shape, dtype=dtype) if g_spikes is None else g_spikes.to(dtype).contiguous()
    g_p = torch.zeros(1, 1, 1, dtype=dtype) if g_probs is None else g_probs.to(dtype).contiguous()
    g_z, acc_in, acc_ent, acc_mem = kernels.neuron_backward(
        z_np,
        fired,
        g_s.numpy(),
        g_p.numpy(),
        g_probs is not None,
        offset_half,
        ce,
        se,
        cm,
        sm,
        kernels.MODE_CODES[mode],
        surrogate == "sigmoid",
        math.pi * float(leak),
    )
    g_in = torch.from_numpy(acc_in).sum(0)
    if mode == "quantum":
        g_ent, g_mem = torch.from_numpy(acc_ent).sum(0), torch.from_numpy(acc_mem).sum(0)
    elif mode == "official":
        g_ent, g_mem = torch.from_numpy(acc_ent).sum(0), g_in
    else:
        g_ent, g_mem = torch.zeros_like(g_in), torch.zeros_like(g_in)
    return torch.from_numpy(g_z), g_ent, g_mem, g_in


class _SQSLayerFn(torch.autograd.Function):
    """Whole-sample SQS layer on the CPU: fused numba kernels forward and backward (BPTT through the memory)."""

    @staticmethod
    def forward(
        ctx: Any,
        z: Tensor,
        theta_ent: Tensor,
        theta_mem: Tensor,
        theta_in: Tensor,
        mode: str,
        surrogate: str,
        generator: torch.Generator | None,
        leak: float,
    ) -> tuple[Tensor, Tensor]:
        # one key per step, as sqs_step's T successive draws: the same numbers (tested)
        from sqsnn import kernels

        u = kernels.draw_uniforms(tuple(z.shape), generator, kernel_dtype(z.dtype))
        run = _kernel_forward(z, SQSParams(theta_ent, theta_mem, theta_in), mode, u, record=False)
        ctx.set_materialize_grads(False)
        ctx.saved = run.saved
        ctx.options = (mode, surrogate, leak)
        ctx.dtypes = (z.dtype, theta_ent.dtype, theta_mem.dtype, theta_in.dtype)
        return run.spikes.to(z.dtype), run.probs.to(z.dtype)

    @staticmethod
    def backward(ctx: Any, g_spikes: Tensor | None, g_probs: Tensor | None) -> tuple[Tensor | None, ...]:
        if g_spikes is None and g_probs is None:
            return (None,) * 8
        grads = _kernel_backward(ctx.saved, g_spikes, g_probs, *ctx.options)
        return (*(g.to(dtype) for g, dtype in zip(grads, ctx.dtypes, strict=True)), None, None, None, None)


def sqs_layer_trace(
    z: Tensor, params: SQSParams, mode: MemoryMode, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, SQSState]:
    """:func:`sqs_layer` without gradients that also returns the memory entering every step (the record the
    local rule needs): ``(spikes, probs, state)``, state fields ``(T, B, n)``. Same draws, same spikes.
    Runs the fused kernels on the CPU, :func:`sqs_step` in a loop elsewhere."""
    check_mode(mode)
    if z.device.type != "cpu":
        state = initial_state(z.shape[1], z.shape[2], dtype=z.dtype, device=z.device)
        records, sampled, probabilities = [], [], []
        with torch.no_grad():
            for z_t in z:
                records.append(state)
                s, p, state = sqs_step(z_t, state, params, mode, generator)
                sampled.append(s)
                probabilities.append(p)
        stacked = SQSState(*(torch.stack(field) for field in zip(*records, strict=True)))
        return torch.stack(sampled), torch.stack(probabilities), stacked
    from sqsnn import kernels

    u = kernels.draw_uniforms(tuple(z.shape), generator, kernel_dtype(z.dtype))
    run = _kernel_forward(z, params, mode, u, record=True)
    spikes, probs = run.spikes.to(z.dtype), run.probs.to(z.dtype)
    last = torch.cat([torch.zeros_like(spikes[:1]), spikes[:-1]])
    if mode == "quantum":
        return spikes, probs, SQSState(run.bloch_y.to(z.dtype), run.bloch_z.to(z.dtype), last)
    zeros = torch.zeros_like(spikes)
    return spikes, probs, SQSState(zeros, torch.ones_like(zeros), last)


def _stepwise_layer(
    z: Tensor,
    params: SQSParams,
    mode: MemoryMode,
    generator: torch.Generator | None,
    surrogate: Surrogate,
    leak: float,
) -> tuple[Tensor, Tensor]:
    """:func:`sqs_layer` by T calls of :func:`sqs_step` under autograd (any device)."""
    state = initial_state(z.shape[1], z.shape[2], dtype=z.dtype, device=z.device)
    spikes, probs = [], []
    for t in range(z.shape[0]):
        s, p, state = sqs_step(z[t], state, params, mode, generator, surrogate, leak=leak)
        spikes.append(s)
        probs.append(p)
    return torch.stack(spikes), torch.stack(probs)


def sqs_layer(
    z: Tensor,
    params: SQSParams,
    mode: MemoryMode,
    generator: torch.Generator | None,
    surrogate: Surrogate = "sigmoid",
    *,
    leak: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Run a layer of n SQS neurons over a whole sample, memory reset to ``|0>`` at the start.

    Equal in value and gradient to :func:`sqs_step` applied T times (same generator draws). On the CPU
    it runs fused kernels (:mod:`sqsnn.kernels`) with a hand-written backward pass through time; on other
    devices it falls back to the step-by-step autograd loop.

    Args:
        z: input currents ``(T, B, n)``.
        params: angles, each ``(n,)``.
        mode: memory mode.
        generator: source of the single-shot randomness.
        surrogate: backward rule for ds/dp.
        leak: backward slope of the embedding for ``z <= 0`` (:func:`embedding_angle`; 0: exact).

    Returns:
        ``(spikes, p)``, both ``(T, B, n)``: single-shot spikes in {0, 1} (surrogate gradient) and the spike
        probability of every step given the sampled history.
    """
    check_mode(mode)
    check_surrogate(surrogate)
    if leak < 0:
        raise ValueError(f"leak must be >= 0; got {leak}")
    if z.dim() != 3:
        raise ValueError(f"z must be (T, B, n); got shape {tuple(z.shape)}")
    if z.device.type != "cpu":
        return _stepwise_layer(z, params, mode, generator, surrogate, leak)
    spikes, probs = _SQSLayerFn.apply(
        z, params.theta_ent, params.theta_mem, params.theta_in, mode, surrogate, generator, leak
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
