"""Fused CPU kernels (numba) of the N = N_M = 1 SQS layer and of event-driven synapses.

Neurons. The math is :mod:`sqsnn.neuron`'s; these kernels fuse the T-step recurrence with the embedding.
Every step's first half angle :math:`h_0 = (\\phi + \\text{offset})/2` (offset ``theta_in``, or
``theta_mem + theta_in`` in mode ``official``) comes from the current alone; its sine and cosine are a
branch-free polynomial (:func:`sincos`), and the second angle :math:`h_0 + \\theta_{ent}/2` is reached by
angle addition with the per-neuron ``(ce, se) = (cos, sin)(theta_ent / 2)``. So a step is a few dozen
multiplications, one division and one comparison, with no call: the loops over the neuron axis
(contiguous) are SIMD-vectorised by LLVM, in parallel over samples. Memory traffic is the limit, so the
forward pass reads only ``z`` and the uniforms and writes spikes, probabilities and a uint8 copy of the
spikes; the backward pass recomputes the trigonometry and the memory trajectory of each sample from
``z`` and the sampled spikes instead of storing them.

The backward pass walks time backwards with ``t`` read from an index array rather than from a
decreasing ``range``: LLVM hoists the neuron loop's run-time aliasing checks out of the time loop only
for arrays whose address grows with it, and with a decreasing one it takes the scalar fallback on
every call (measured: 6x slower, float32 and float64 alike). An index it cannot follow keeps the checks
per step, where they pass.

Arrays are ``(T, B, n)`` C-contiguous, all of one floating dtype (float64 or float32; numba compiles one
version per dtype); per-neuron arrays are ``(n,)``; ``fired`` is the ``(T, B, n)`` uint8 copy of the
spikes. The half angles and their sines and cosines are computed in the arrays' dtype: float32 has its own
reduction and polynomials (:func:`sincos_float32`, twice the SIMD lanes; within 1.2e-7 of float64's
values, tested) and a smaller angle limit (:data:`ANGLE_LIMIT_FLOAT32`). Constants are
made in the arrays' dtype (``arr.dtype.type(...)``) so that no float64 literal promotes float32
arithmetic. Modes are integers: 0 quantum, 1 memoryless, 2 official.

Uniforms. The single-shot draws come from Philox4x32-10 (:func:`philox4x32`, the counter-based generator
of Salmon et al., SC 2011; checked against its published known-answer vectors): one 64-bit key per step,
drawn from the caller's ``torch.Generator``, and the block index as the counter, so the draws of a
``(T, B, n)`` layer are filled in parallel and SIMD (:func:`uniforms`), ~13x faster than ``torch.rand``'s
sequential Mersenne twister here, and a step drawn alone gets the same numbers (:func:`draw_uniforms`).

Synapses. :func:`spike_rows` turns a ``(R, D)`` input into per-row lists of its non-zero entries (CSR);
:func:`sparse_dense` sums, for every row, the weight rows of its active inputs (the forward currents)
and, from the column view of the same entries (:func:`transpose_lists`), for every input the current
gradients of the rows where it was active (the weight gradient): both are gathers into a cache-resident
accumulator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

# isort: off
from sqsnn import cpu_target  # noqa: F401  (sets numba's target features; must come before numba's import)
import numba

# isort: on
import numpy as np
import numpy.typing as npt
import torch

Array = npt.NDArray[np.floating]
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
MODE_CODES = {"quantum": 0, "memoryless": 1, "official": 2}
BLOCK = 256  # columns per block of the synapse kernels (measured: 256 float64 columns of 784 rows fit L2)

_OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "arcp", "nsz"}}


# Cody-Waite split of pi/2 (33 + 33 + 33 bits: k * part is exact for |k| < 2^20) and the minimax
# polynomials of sin and cos on [-pi/4, pi/4] (fdlibm's __kernel_sin / __kernel_cos coefficients).
_PIO2_1 = 1.57079632673412561417e00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_3 = 2.02226624871116645580e-21
_TWO_OVER_PI = 6.36619772367581382433e-01
_ROUND = 6755399441055744.0  # 1.5 * 2^52: adding and subtracting it rounds a |x| < 2^51 to an integer
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11
ANGLE_LIMIT = 1.0e6
"""Largest |half angle| (radians) the kernels' float64 sine and cosine reduce exactly (``|k| < 2^20`` quarter
turns)."""

# float32: pi/2 in three parts (8 + 12 + 24 bits: k * part exact for |k| < 2^12), and the minimax polynomials of
# sin and cos on [-pi/4, pi/4] to float32 precision (Cephes' sinf / cosf coefficients).
_PIO2_1F, _PIO2_2F = np.float32(1.5703125), np.float32(4.838705062866211e-04)
_PIO2_3F = np.float32(-4.371138828673793e-08)
_TWO_OVER_PI_F = np.float32(6.36619772367581382433e-01)
_ROUND_F = np.float32(12582912.0)  # 1.5 * 2^23: rounds a float32 |x| < 2^22 to an integer
_S1F, _S2F, _S3F = np.float32(-1.6666654611e-1), np.float32(8.3321608736e-3), np.float32(-1.9515295891e-4)
_C1F, _C2F, _C3F = np.float32(4.166664568298827e-2), np.float32(-1.388731625493765e-3), np.float32(2.443315711809948e-5)
_HALF_F, _ONE_F = np.float32(0.5), np.float32(1.0)
ANGLE_LIMIT_FLOAT32 = 6.0e3
"""Largest |half angle| (radians) of the float32 kernels (``|k| < 2^12`` quarter turns reduce exactly)."""


@numba.njit(inline="always", **_OPTS)
def _quarter_turn(q: int, sin_r: float, cos_r: float) -> tuple[float, float]:  # pragma: no cover - compiled
    """``(sin h, cos h)`` from those of the reduced angle ``r`` for ``h = r + q pi/2`` (``q`` in 0..3), by
    selects (branch-free)."""
    odd = (q & 1) != 0
    sin_h = cos_r if odd else sin_r
    cos_h = sin_r if odd else cos_r
    sin_h = -sin_h if (q & 2) != 0 else sin_h
    cos_h = -cos_h if ((q + 1) & 2) != 0 else cos_h
    return sin_h, cos_h


@numba.njit(inline="always", **_OPTS)
def sincos(h: float) -> tuple[float, float]:  # pragma: no cover - compiled
    """``(sin h, cos h)`` in float64 within ~1 ulp for ``|h| <= ANGLE_LIMIT``: branch-free (SIMD-vectorisable)
    reduction to ``r in [-pi/4, pi/4]`` with ``h = k pi/2 + r``, polynomials, and the quarter turn
    ``k mod 4`` chosen by selects."""
    k = (h * _TWO_OVER_PI + _ROUND) - _ROUND  # nearest integer (no libm call; needs no 'reassoc')
    r = ((h - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    r2 = r * r
    sin_r = r + r * r2 * (_S1 + r2 * (_S2 + r2 * (_S3 + r2 * (_S4 + r2 * (_S5 + r2 * _S6)))))
    cos_r = 1.0 - 0.5 * r2 + r2 * r2 * (_C1 + r2 * (_C2 + r2 * (_C3 + r2 * (_C4 + r2 * (_C5 + r2 * _C6)))))
    return _quarter_turn(np.int64(k) & 3, sin_r, cos_r)


@numba.njit(inline="always", **_OPTS)
def sincos_float32(h: np.float32) -> tuple[np.float32, np.float32]:  # pragma: no cover - compiled
    """``(sin h, cos h)`` in float32 within a few float32 ulps for ``|h| <= ANGLE_LIMIT_FLOAT32``: :func:`sincos`'s
    scheme in single precision (twice the SIMD lanes)."""
    k = (h * _TWO_OVER_PI_F + _ROUND_F) - _ROUND_F
    r = ((h - k * _PIO2_1F) - k * _PIO2_2F) - k * _PIO2_3F
    r2 = r * r
    sin_r = r + r * r2 * (_S1F + r2 * (_S2F + r2 * _S3F))
    cos_r = _ONE_F - _HALF_F * r2 + r2 * r2 * (_C1F + r2 * (_C2F + r2 * _C3F))
    return _quarter_turn(np.int32(k) & 3, sin_r, cos_r)


@numba.njit(inline="always", **_OPTS)
def half_angle_sincos(z: float, offset_half: float) -> tuple[float, float, float]:  # pragma: no cover - compiled
    """The half angle ``h = pi max(z, 0) / 2 + offset_half`` and its sine and cosine, in ``z``'s precision:
    float64 (:func:`sincos`) or float32 (:func:`sincos_float32`; ``offset_half`` then float32 as well)."""
    if isinstance(z, np.float32):
        h32 = np.float32(0.5 * np.pi) * max(z, np.float32(0.0)) + offset_half
        s32, c32 = sincos_float32(h32)
        return h32, s32, c32
    h = 0.5 * np.pi * max(z, 0.0) + offset_half
    s64, c64 = sincos(h)
    return h, s64, c64


@numba.njit(parallel=True, **_OPTS)
def sincos_array(h: Array) -> tuple[Array, Array]:  # pragma: no cover
    """The kernels' sine and cosine of every entry of a 1-D float64 or float32 array (for tests)."""
    sin_out = np.empty_like(h)
    cos_out = np.empty_like(h)
    for i in numba.prange(h.shape[0]):
        _, sin_out[i], cos_out[i] = half_angle_sincos(h.dtype.type(0.0), h[i])
    return sin_out, cos_out


# Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): multipliers and
# the Weyl increments of the key schedule.
_PHILOX_M0, _PHILOX_M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_PHILOX_W0, _PHILOX_W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32, _SHIFT11, _SHIFT8 = np.uint64(32), np.uint64(11), np.uint64(8)
UNIFORM_CHUNKS = 8
"""Tasks per step of :func:`uniforms` (the parallel grain)."""


@numba.njit(inline="always", **_OPTS)
def philox4x32(
    c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:  # pragma: no cover - compiled
    """Philox4x32-10 of the 128-bit counter ``(c0, c1, c2, c3)`` under the 64-bit key ``(k0, k1)``: four
    32-bit words. Every argument and result is a uint64 holding a 32-bit value."""
    for _ in range(10):
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        c0, c1, c2, c3 = (p1 >> _SHIFT32) ^ c1 ^ k0, p1 & _LOW32, (p0 >> _SHIFT32) ^ c3 ^ k1, p0 & _LOW32
        k0 = (k0 + _PHILOX_W0) & _LOW32
        k1 = (k1 + _PHILOX_W1) & _LOW32
    return c0, c1, c2, c3


@numba.njit(**_OPTS)
def _philox_planes(k0: np.uint64, k1: np.uint64, first: int, planes: Array) -> None:  # pragma: no cover
    """Blocks ``first .. first + L - 1`` of Philox4x32-10 under ``(k0, k1)`` (counter ``(i, 0, 0, 0)``,
    ``i < 2^32``) into the contiguous ``planes (P, L)``: ``planes[:, j]`` from block ``first + j``, as float32
    ``(w >> 8) 2^-24`` of its four words (``P = 4``) or float64 ``((w_0 2^32 + w_1) >> 11) 2^-53`` and the
    same of ``(w_2, w_3)`` (``P = 2``)."""
    zero = np.uint64(0)
    base = np.uint64(first)
    if planes.itemsize == 4:
        scale = planes.dtype.type(2.0**-24)
        for j in range(planes.shape[1]):
            w0, w1, w2, w3 = philox4x32((base + np.uint64(j)) & _LOW32, zero, zero, zero, k0, k1)
            planes[0, j] = planes.dtype.type(w0 >> _SHIFT8) * scale
            planes[1, j] = planes.dtype.type(w1 >> _SHIFT8) * scale
            planes[2, j] = planes.dtype.type(w2 >> _SHIFT8) * scale
            planes[3, j] = planes.dtype.type(w3 >> _SHIFT8) * scale
    else:
        scale = planes.dtype.type(2.0**-53)
        for j in range(planes.shape[1]):
            w0, w1, w2, w3 = philox4x32((base + np.uint64(j)) & _LOW32, zero, zero, zero, k0, k1)
            planes[0, j] = planes.dtype.type(((w0 << _SHIFT32) | w1) >> _SHIFT11) * scale
            planes[1, j] = planes.dtype.type(((w2 << _SHIFT32) | w3) >> _SHIFT11) * scale


@numba.njit(parallel=True, **_OPTS)
def philox_words(key: np.uint64, counters: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:  # pragma: no cover
    """The four words of Philox4x32-10 for every 128-bit counter ``counters[i] = (c0, c1, c2, c3)`` (32-bit
    values) under the 64-bit ``key`` (``(N, 4)`` in, ``(N, 4)`` out; for the known-answer tests)."""
    out = np.empty_like(counters)
    for i in numba.prange(counters.shape[0]):
        c = counters[i]
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = philox4x32(c[0], c[1], c[2], c[3], key & _LOW32, key >> _SHIFT32)
    return out


@numba.njit(parallel=True, **_OPTS)
def uniforms(keys: npt.NDArray[np.uint64], out: Array) -> None:  # pragma: no cover - compiled
    """Fill ``out (T, C, P, L)`` with uniforms on ``[0, 1)``: step ``t`` from Philox4x32-10 under ``keys[t]``,
    ``out[t, c]`` from blocks ``c L .. c L + L - 1`` (:func:`_philox_planes`; ``P = 4`` for float32, 2 for
    float64), the ``T C`` tasks in parallel."""
    steps, chunks, _, length = out.shape
    for task in numba.prange(steps * chunks):
        t, c = task // chunks, task % chunks
        _philox_planes(keys[t] & _LOW32, keys[t] >> _SHIFT32, c * length, out[t, c])


def draw_uniforms(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype) -> torch.Tensor:
    """The single-shot uniforms of ``T`` steps: ``shape = (T, *rest)``, values on ``[0, 1)`` in ``dtype``
    (float32; any other dtype gives float64), on the CPU.

    Each step takes one key, ``torch.randint(0, 2^63 - 1)`` from ``generator`` (on the generator's device;
    the global generator when None), and fills its ``rest`` in C order from the flattened :func:`uniforms`
    layout (:data:`UNIFORM_CHUNKS` chunks of ``P`` planes), in parallel. The generator advances by ``T``
    draws, so ``T`` calls with ``T = 1`` give the same numbers as one call (tested): a layer run whole and
    step by step samples the same spikes.
    """
    steps, rest = shape[0], shape[1:]
    device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.randint(0, 2**63 - 1, (steps,), generator=generator, dtype=torch.int64, device=device).cpu()
    size = int(np.prod(rest))
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    planes = 4 if np_dtype == np.float32 else 2
    length = -(-size // (planes * UNIFORM_CHUNKS))
    out = np.empty((steps, UNIFORM_CHUNKS, planes, length), dtype=np_dtype)
    match_torch_threads()
    uniforms(keys.numpy().view(np.uint64), out)
    return torch.from_numpy(out).reshape(steps, -1)[:, :size].reshape(shape)


@numba.njit(parallel=True, **_OPTS)
def neuron_forward(
    z: Array,
    u: Array,
    offset_half: Array,
    ce: Array,
    se: Array,
    cm: Array,
    sm: Array,
    mode: int,
    record: bool,
) -> tuple[Array, Array, U8, Array, Array, int]:  # pragma: no cover - compiled
    """Sample a whole sample's spikes from the currents ``z (T, B, n)`` and uniforms ``u`` (``s = 1[u < p]``).

    Returns ``spikes``, ``probs`` (``(T, B, n)``, ``z``'s dtype), ``fired`` (uint8), the memory's Bloch y
    and z entering every step when ``record`` (mode quantum; ``(T, B, n)``, else ``(0, 0, 0)``) and the
    number of half angles that were not finite or beyond :data:`ANGLE_LIMIT` (float32:
    :data:`ANGLE_LIMIT_FLOAT32`; the caller refuses them). ``offset_half (n,)``: half the angle added to
    ``phi``; ``ce, se`` and ``cm, sm``: cosine and sine of ``theta_ent / 2`` and of ``theta_mem``; all in
    ``z``'s dtype, in which the half angles and their sines and cosines are computed
    (:func:`half_angle_sincos`).
    """
    steps, batch, n = z.shape
    spikes = np.empty_like(z)
    probs = np.empty_like(z)
    fired = np.empty(z.shape, dtype=np.uint8)
    kept = z.shape if record and mode == 0 else (0, 0, 0)
    bloch_y = np.empty(kept, dtype=z.dtype)
    bloch_z = np.empty(kept, dtype=z.dtype)
    one = z.dtype.type(1.0)
    zero = one - one
    half = one / (one + one)
    limit = ANGLE_LIMIT_FLOAT32 if z.itemsize == 4 else ANGLE_LIMIT
    out_of_range = np.zeros(batch, dtype=np.int64)
    for b in numba.prange(batch):
        y = np.zeros_like(ce)  # Bloch y of the memory (quantum) ...
        zb = np.ones_like(ce)  # ... and Bloch z
        last = np.zeros_like(ce)  # previous spike (official)
        sines = np.empty_like(ce)  # the step's sin(h0), cos(h0)
        cosines = np.empty_like(ce)
        for t in range(steps):
            bad = 0
            for j in range(n):
                h, s_h, c_h = half_angle_sincos(z[t, b, j], offset_half[j])
                bad += 0 if abs(h) <= limit else 1
                sines[j] = s_h
                cosines[j] = c_h
            out_of_range[b] += bad
            if mode == 0:
                if record:
                    for j in range(n):
                        bloch_y[t, b, j] = y[j]
                        bloch_z[t, b, j] = zb[j]
                for j in range(n):
                    a0, b0 = sines[j], cosines[j]
                    a1 = a0 * ce[j] + b0 * se[j]  # sin(h0 + theta_ent / 2)
                    b1 = b0 * ce[j] - a0 * se[j]
                    p0 = half * (one + zb[j])  # population of |0>
                    p1 = one - p0
                    p = p0 * (a0 * a0) + p1 * (a1 * a1)
                    f = u[t, b, j] < p
                    e0 = a0 if f else b0
                    e1 = a1 if f else b1
                    m0 = e0 * e0 * p0
                    m1 = e1 * e1 * p1
                    inv = one / (m0 + m1)
                    z_pre = (m0 - m1) * inv
                    y_pre = e0 * e1 * y[j] * inv
                    y[j] = y_pre * cm[j] - z_pre * sm[j]
                    zb[j] = y_pre * sm[j] + z_pre * cm[j]
                    probs[t, b, j] = p
                    spikes[t, b, j] = one if f else zero
                    fired[t, b, j] = 1 if f else 0
            else:
                for j in range(n):
                    a0 = sines[j]
                    a = a0 * ce[j] + cosines[j] * se[j] if last[j] > zero else a0
                    p = a * a
                    f = u[t, b, j] < p
                    if mode == 2:
                        last[j] = one if f else zero
                    probs[t, b, j] = p
                    spikes[t, b, j] = one if f else zero
                    fired[t, b, j] = 1 if f else 0
    return spikes, probs, fired, bloch_y, bloch_z, out_of_range.sum()


@numba.njit(parallel=True, **_OPTS)
def neuron_backward(
    z: Array,
    fired: U8,
    g_spikes: Array,
    g_probs: Array,
    has_g_probs: bool,
    offset_half: Array,
    ce: Array,
    se: Array,
    cm: Array,
    sm: Array,
    mode: int,
    sigmoid_surrogate: bool,
    pi_slope_below: float,
) -> tuple[Array, Array, Array, Array]:  # pragma: no cover - compiled
    """Reverse-mode pass through time along :func:`neuron_forward`'s sampled spikes (``fired``).

    Recomputes, per sample, the half angles' sines and cosines and the memory trajectory, then runs the
    steps backwards. The surrogate ``ds/dp`` is ``p (1 - p)`` (``sigmoid_surrogate``) or 1; ``g_probs`` is
    read only when ``has_g_probs``. ``d phi / dz`` is pi for ``z > 0`` and ``pi_slope_below`` (pi times the
    embedding's leak) elsewhere.

    Returns ``g_z (T, B, n)`` and, per sample and neuron ``(B, n)``, the gradients of the first angle
    (``phi + offset``), of ``theta_ent`` and of ``theta_mem`` (the caller sums them over the batch and
    maps them to parameters per mode).
    """
    steps, batch, n = z.shape
    g_z = np.empty_like(z)
    acc_in = np.zeros((batch, n), dtype=z.dtype)
    acc_ent = np.zeros((batch, n), dtype=z.dtype)
    acc_mem = np.zeros((batch, n), dtype=z.dtype)
    one = z.dtype.type(1.0)
    zero = one - one
    half = one / (one + one)
    two = one + one
    pi_above = z.dtype.type(np.pi)
    pi_below = z.dtype.type(pi_slope_below)
    reverse = np.arange(steps - 1, -1, -1)
    for b in numba.prange(batch):
        sines = np.empty((steps, n), dtype=z.dtype)
        cosines = np.empty((steps, n), dtype=z.dtype)
        ys = np.empty((steps + 1, n), dtype=z.dtype)  # memory entering every step (and after the last)
        zs = np.empty((steps + 1, n), dtype=z.dtype)
        for j in range(n):
            ys[0, j] = zero
            zs[0, j] = one
        for t in range(steps):
            for j in range(n):
                _, s_h, c_h = half_angle_sincos(z[t, b, j], offset_half[j])
                sines[t, j] = s_h
                cosines[t, j] = c_h
            if mode == 0:
                for j in range(n):
                    a0, b0 = sines[t, j], cosines[t, j]
                    a1 = a0 * ce[j] + b0 * se[j]
                    b1 = b0 * ce[j] - a0 * se[j]
                    p0 = half * (one + zs[t, j])
                    p1 = one - p0
                    f = fired[t, b, j] != 0
                    e0 = a0 if f else b0
                    e1 = a1 if f else b1
                    m0 = e0 * e0 * p0
                    m1 = e1 * e1 * p1
                    inv = one / (m0 + m1)
                    z_pre = (m0 - m1) * inv
                    y_pre = e0 * e1 * ys[t, j] * inv
                    ys[t + 1, j] = y_pre * cm[j] - z_pre * sm[j]
                    zs[t + 1, j] = y_pre * sm[j] + z_pre * cm[j]
        g_y = np.zeros_like(ce)  # gradient of the memory after the step being processed
        g_zb = np.zeros_like(ce)
        for r in range(steps):
            t = reverse[r]  # steps - 1 - r, read from an array: see the module docstring
            if mode == 0:
                for j in range(n):
                    a0, b0 = sines[t, j], cosines[t, j]
                    a1 = a0 * ce[j] + b0 * se[j]
                    b1 = b0 * ce[j] - a0 * se[j]
                    y = ys[t, j]
                    p0 = half * (one + zs[t, j])
                    p1 = one - p0
                    p = p0 * (a0 * a0) + p1 * (a1 * a1)
                    slope = p * (one - p) if sigmoid_surrogate else one
                    g_p = g_spikes[t, b, j] * slope
                    if has_g_probs:
                        g_p += g_probs[t, b, j]
                    f = fired[t, b, j] != 0
                    e0 = a0 if f else b0
                    e1 = a1 if f else b1
                    de0 = b0 if f else -a0
                    de1 = b1 if f else -a1
                    m0 = e0 * e0 * p0
                    m1 = e1 * e1 * p1
                    inv = one / (m0 + m1)
                    z_pre = (m0 - m1) * inv
                    y_pre = e0 * e1 * y * inv
                    gy, gzb = g_y[j], g_zb[j]
                    acc_mem[b, j] += gzb * ys[t + 1, j] - gy * zs[t + 1, j]
                    g_ypre = gy * cm[j] + gzb * sm[j]
                    g_zpre = gzb * cm[j] - gy * sm[j]
                    g_norm = -(g_ypre * y_pre + g_zpre * z_pre) * inv
                    g_m0 = g_zpre * inv + g_norm
                    g_m1 = g_norm - g_zpre * inv
                    g_yy = g_ypre * y * inv
                    g_e0 = g_yy * e1 + two * e0 * p0 * g_m0
                    g_e1 = g_yy * e0 + two * e1 * p1 * g_m1
                    g_q0 = g_m0 * e0 * e0 + g_p * a0 * a0
                    g_q1 = g_m1 * e1 * e1 + g_p * a1 * a1
                    g_y[j] = g_ypre * e0 * e1 * inv
                    g_zb[j] = half * (g_q0 - g_q1)
                    g_a0 = half * (g_e0 * de0 + two * g_p * p0 * a0 * b0)
                    g_a1 = half * (g_e1 * de1 + two * g_p * p1 * a1 * b1)
                    g_phi = g_a0 + g_a1
                    acc_ent[b, j] += g_a1
                    acc_in[b, j] += g_phi
                    g_z[t, b, j] = g_phi * (pi_above if z[t, b, j] > zero else pi_below)
            else:
                for j in range(n):
                    a0, b0 = sines[t, j], cosines[t, j]
                    prev = mode == 2 and t > 0 and fired[t - 1, b, j] != 0
                    a = a0 * ce[j] + b0 * se[j] if prev else a0
                    c = b0 * ce[j] - a0 * se[j] if prev else b0
                    p = a * a
                    slope = p * (one - p) if sigmoid_surrogate else one
                    g_p = g_spikes[t, b, j] * slope
                    if has_g_probs:
                        g_p += g_probs[t, b, j]
                    # d sin^2(a/2) / da = sin(a/2) cos(a/2)
                    g_phi = g_p * a * c
                    if prev:
                        acc_ent[b, j] += g_phi
                    acc_in[b, j] += g_phi
                    g_z[t, b, j] = g_phi * (pi_above if z[t, b, j] > zero else pi_below)
    return g_z, acc_in, acc_ent, acc_mem


@numba.njit(parallel=True, **_OPTS)
def spike_rows(x: Array, limit: int) -> tuple[I64, I64, Array]:  # pragma: no cover - compiled
    """The non-zero entries of ``x (R, D)`` row by row (CSR): ``indptr (R + 1,)``, ``indices (nnz,)`` and
    ``values (nnz,)``, columns in increasing order within a row. If there are more than ``limit``
    non-zeros only ``indptr`` is filled (``indices`` and ``values`` are empty)."""
    rows, width = x.shape
    counts = np.zeros(rows + 1, dtype=np.int64)
    for r in numba.prange(rows):
        c = 0
        for q in range(width):
            if x[r, q] != 0:
                c += 1
        counts[r + 1] = c
    indptr = np.cumsum(counts)
    size = indptr[rows] if indptr[rows] <= limit else 0
    indices = np.empty(size, dtype=np.int64)
    values = np.empty(size, dtype=x.dtype)
    if size == 0:
        return indptr, indices, values
    for r in numba.prange(rows):
        k = indptr[r]
        for q in range(width):
            if x[r, q] != 0:
                indices[k] = q
                values[k] = x[r, q]
                k += 1
    return indptr, indices, values


@numba.njit(parallel=True, **_OPTS)
def sparse_dense(
    indptr: I64, indices: I64, values: Array, table: Array, init: Array, has_init: bool, out: Array
) -> None:  # pragma: no cover - compiled
    """``out[l, :] = init + sum_k values[k] * table[indices[k], :]`` over the entries ``k`` of list ``l``
    (CSR lists ``indptr (L + 1,)``, ``indices``, ``values``; ``table (M, n)``, ``init (n,)``, ``out (L, n)``,
    any strides).

    Columns are processed in blocks of :data:`BLOCK`, in parallel: the block of ``table`` is copied into a
    contiguous ``(M, BLOCK)`` buffer (kept in cache) and every list adds its rows four at a time into a
    block-sized accumulator.
    """
    rows, n = table.shape
    lists = indptr.shape[0] - 1
    blocks = (n + BLOCK - 1) // BLOCK
    for blk in numba.prange(blocks):
        lo = blk * BLOCK
        size = min(BLOCK, n - lo)
        buf = np.empty((rows, size), dtype=table.dtype)
        for m in range(rows):
            for c in range(size):
                buf[m, c] = table[m, lo + c]
        acc = np.empty(size, dtype=table.dtype)
        for lst in range(lists):
            for c in range(size):
                acc[c] = init[lo + c] if has_init else table.dtype.type(0)
            k, stop = indptr[lst], indptr[lst + 1]
            while k + 3 < stop:
                v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
                r0, r1, r2, r3 = buf[indices[k]], buf[indices[k + 1]], buf[indices[k + 2]], buf[indices[k + 3]]
                for c in range(size):
                    acc[c] += (v0 * r0[c] + v1 * r1[c]) + (v2 * r2[c] + v3 * r3[c])
                k += 4
            while k < stop:
                v0, r0 = values[k], buf[indices[k]]
                for c in range(size):
                    acc[c] += v0 * r0[c]
                k += 1
            for c in range(size):
                out[lst, lo + c] = acc[c]


@numba.njit(cache=True)
def transpose_lists(indptr: I64, indices: I64, values: Array, width: int) -> tuple[I64, I64, Array]:  # pragma: no cover
    """CSR lists by row -> by column (``width`` columns): the column view of the same entries, rows in
    increasing order within a column."""
    counts = np.zeros(width + 1, dtype=np.int64)
    for k in range(indices.shape[0]):
        counts[indices[k] + 1] += 1
    col_ptr = np.cumsum(counts)
    fill = col_ptr[:-1].copy()
    rows = np.empty(indices.shape[0], dtype=np.int64)
    col_values = np.empty(indices.shape[0], dtype=values.dtype)
    for r in range(indptr.shape[0] - 1):
        for k in range(indptr[r], indptr[r + 1]):
            q = indices[k]
            rows[fill[q]] = r
            col_values[fill[q]] = values[k]
            fill[q] += 1
    return col_ptr, rows, col_values


def match_torch_threads() -> None:
    """Run numba's parallel loops on as many threads as torch's intra-op pool (at most numba's maximum), and
    leave torch's pool as it was.

    numba's OpenMP threading layer shares the OpenMP runtime with torch, and launching it (on the first call in
    a process) sets the runtime's thread count to ``NUMBA_NUM_THREADS`` (default: every core). torch, asked for
    one thread, then ran its own reductions on all cores: results that depended on that environment variable
    (a seeded digits run diverged after six epochs) and oversubscribed cores beside other processes. So
    torch's count is read first and put back.
    """
    wanted = torch.get_num_threads()
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve blocks up to 32 MiB from its heap and keep freed memory mapped.

    A training step allocates and frees the same (T, B, n) arrays every time; by default glibc maps blocks
    above a (dynamic) threshold afresh and returns freed heap memory to the system, so each step pays a page
    fault per 4 KiB page it touches (measured here: 20 ms of a 23 ms kernel call). Called once by the
    training loop and the benchmarks; process-wide. Returns False where the C library has no ``mallopt``.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError, TypeError):
        return False
