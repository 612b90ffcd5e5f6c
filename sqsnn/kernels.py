"""Fused CPU kernels of the N = N_M = 1 SQS layer (numba): the whole T-step recurrence of one neuron on one
sample runs in registers, in parallel over (sample, neuron) pairs.

The math is :mod:`sqsnn.neuron`'s; these kernels only fuse it. Arrays are float64 and C-contiguous:
currents, uniforms, spikes and probabilities ``(T, E)`` with E = B * n flattened sample-major (element
``e`` is neuron ``e % n``), angles ``(n,)``. Modes are integers: 0 quantum, 1 memoryless, 2 official.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
MODE_CODES = {"quantum": 0, "memoryless": 1, "official": 2}


@numba.njit(inline="always", cache=True)
def _collapse(
    e0: float, e1: float, q0: float, y: float, cm: float, sm: float
) -> tuple[float, float, float, float, float]:  # pragma: no cover - compiled
    """Memory after the outcome whose Kraus diagonal is (e0, e1), from populations (q0, 1 - q0) and Bloch y.

    Returns ``(1/norm, z_pre, y_pre, y_next, z_next)``: the normalised post-measurement Bloch components and
    the same after ``RX(theta_mem)`` (cosine ``cm``, sine ``sm``).
    """
    m0 = e0 * e0 * q0
    m1 = e1 * e1 * (1.0 - q0)
    inv = 1.0 / (m0 + m1)
    z_pre = (m0 - m1) * inv
    y_pre = e0 * e1 * y * inv
    return inv, z_pre, y_pre, y_pre * cm - z_pre * sm, y_pre * sm + z_pre * cm


@numba.njit(parallel=True, cache=True, error_model="numpy")
def layer_forward(
    z: F64, u: F64, theta_ent: F64, theta_mem: F64, theta_in: F64, mode: int
) -> tuple[F64, F64, F64, F64, F64, F64]:  # pragma: no cover - compiled
    """Spikes, probabilities, the memory (Bloch y, z) entering every step, and the sine and cosine of the
    step's half angle (``(phi + theta_in)/2`` in mode quantum, the whole angle / 2 otherwise): six ``(T, E)``.
    """
    steps, elements = z.shape
    n = theta_in.shape[0]
    spikes = np.empty((steps, elements))
    probs = np.empty((steps, elements))
    ys = np.empty((steps, elements))
    zs = np.empty((steps, elements))
    half_sin = np.empty((steps, elements))
    half_cos = np.empty((steps, elements))
    for e in numba.prange(elements):
        j = e % n
        te, ti, tm = theta_ent[j], theta_in[j], theta_mem[j]
        cm, sm = math.cos(tm), math.sin(tm)
        ce, se = math.cos(0.5 * te), math.sin(0.5 * te)
        rest_s, rest_c = math.sin(0.5 * ti), math.cos(0.5 * ti)
        y, zb, last = 0.0, 1.0, 0.0
        for t in range(steps):
            zz = z[t, e]
            phi = math.pi * zz if zz > 0 else 0.0
            ys[t, e] = y
            zs[t, e] = zb
            if mode == 0:
                if zz > 0:
                    s0, c0 = math.sin(0.5 * (phi + ti)), math.cos(0.5 * (phi + ti))
                else:
                    s0, c0 = rest_s, rest_c
                # angle addition: h1 = h0 + theta_ent / 2
                s1 = s0 * ce + c0 * se
                c1 = c0 * ce - s0 * se
                half_sin[t, e] = s0
                half_cos[t, e] = c0
                q0 = 0.5 * (1.0 + zb)
                q1 = 1.0 - q0
                p = q0 * (s0 * s0) + q1 * (s1 * s1)
                fired = u[t, e] < p
                e0 = s0 if fired else c0
                e1 = s1 if fired else c1
                _, _, _, y, zb = _collapse(e0, e1, q0, y, cm, sm)
            else:
                a = phi + ti if mode == 1 else phi + tm + ti + te * last
                sa = math.sin(0.5 * a)
                half_sin[t, e] = sa
                half_cos[t, e] = math.cos(0.5 * a)
                p = sa * sa
                fired = u[t, e] < p
                last = 1.0 if fired else 0.0
            probs[t, e] = p
            spikes[t, e] = 1.0 if fired else 0.0
    return spikes, probs, ys, zs, half_sin, half_cos


@numba.njit(parallel=True, cache=True, error_model="numpy")
def layer_backward(
    z: F64,
    spikes: F64,
    probs: F64,
    ys: F64,
    zs: F64,
    half_sin: F64,
    half_cos: F64,
    g_spikes: F64,
    g_probs: F64,
    theta_ent: F64,
    theta_mem: F64,
    theta_in: F64,
    mode: int,
    sigmoid_surrogate: bool,
    leak: float,
) -> tuple[F64, F64, F64, F64]:  # pragma: no cover - compiled
    """Reverse-mode pass through time, from :func:`layer_forward`'s outputs.

    ``d max(z, 0)/dz`` is 1 for ``z > 0`` and ``leak`` for ``z <= 0`` (0: the exact convention, 0 at z = 0).

    Returns ``g_z (T, E)`` and, per element ``(E,)``, the summed gradients of the input angle
    (``phi + theta_in``), of ``theta_ent`` and of ``theta_mem`` (the caller sums them over the batch and
    maps them to parameters per mode).
    """
    steps, elements = z.shape
    n = theta_in.shape[0]
    g_z = np.empty((steps, elements))
    acc_in = np.zeros(elements)
    acc_ent = np.zeros(elements)
    acc_mem = np.zeros(elements)
    for e in numba.prange(elements):
        j = e % n
        tm = theta_mem[j]
        cm, sm = math.cos(tm), math.sin(tm)
        ce, se = math.cos(0.5 * theta_ent[j]), math.sin(0.5 * theta_ent[j])
        g_y, g_zb = 0.0, 0.0
        for t in range(steps - 1, -1, -1):
            zz = z[t, e]
            p = probs[t, e]
            slope = p * (1.0 - p) if sigmoid_surrogate else 1.0
            g_p = g_probs[t, e] + g_spikes[t, e] * slope
            fired = spikes[t, e] > 0
            if mode == 0:
                y, zb = ys[t, e], zs[t, e]
                s0, c0 = half_sin[t, e], half_cos[t, e]
                s1 = s0 * ce + c0 * se
                c1 = c0 * ce - s0 * se
                q0 = 0.5 * (1.0 + zb)
                q1 = 1.0 - q0
                if fired:
                    e0, e1, de0, de1 = s0, s1, c0, c1
                else:
                    e0, e1, de0, de1 = c0, c1, -s0, -s1
                inv, z_pre, y_pre, y_next, z_next = _collapse(e0, e1, q0, y, cm, sm)
                acc_mem[e] += g_zb * y_next - g_y * z_next
                g_ypre = g_y * cm + g_zb * sm
                g_zpre = g_zb * cm - g_y * sm
                g_norm = -(g_ypre * y_pre + g_zpre * z_pre) * inv
                g_m0 = g_zpre * inv + g_norm
                g_m1 = g_norm - g_zpre * inv
                g_yy = g_ypre * y * inv
                g_e0 = g_yy * e1 + 2.0 * e0 * q0 * g_m0
                g_e1 = g_yy * e0 + 2.0 * e1 * q1 * g_m1
                g_q0 = g_m0 * e0 * e0 + g_p * s0 * s0
                g_q1 = g_m1 * e1 * e1 + g_p * s1 * s1
                g_y = g_ypre * e0 * e1 * inv
                g_zb = 0.5 * (g_q0 - g_q1)
                g_a0 = 0.5 * (g_e0 * de0 + 2.0 * g_p * q0 * s0 * c0)
                g_a1 = 0.5 * (g_e1 * de1 + 2.0 * g_p * q1 * s1 * c1)
                g_phi = g_a0 + g_a1
                acc_ent[e] += g_a1
            else:
                last = spikes[t - 1, e] if (mode == 2 and t > 0) else 0.0
                # d sin^2(a/2) / da = sin(a)/2 = sin(a/2) cos(a/2)
                g_phi = g_p * half_sin[t, e] * half_cos[t, e]
                acc_ent[e] += g_phi * last
            acc_in[e] += g_phi
            g_z[t, e] = math.pi * g_phi if zz > 0 else math.pi * leak * g_phi
    return g_z, acc_in, acc_ent, acc_mem
