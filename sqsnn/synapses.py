"""Synaptic currents ``z = x W^T (+ b)`` with event-driven products for sparse spike inputs.

Spike inputs are mostly zeros (rate-coded MNIST at ``p_max = 0.5``: ~10 % ones; hidden layers ~10-15 %).
At or below a threshold density of non-zero entries per input (:func:`sqsnn.event_threshold.event_density`:
measured on the machine, or the operator's setting), the CPU forward product gathers and sums the weight
columns of the active inputs, and the weight gradient sums, for every input, the current gradients of the
rows where it was active (:func:`sqsnn.kernels.sparse_dense` on the entries' row and
column lists); above it, and off the CPU, dense BLAS (``torch.nn.functional.linear``). Both give the same
numbers up to the order of floating-point summation (equal bit for bit when every partial sum is exact;
tested). The gradient with respect to the input is always the dense ``g_z W``.

Shapes: ``x (..., D)``, ``weight (n, D)``, ``bias (n,)``, result ``(..., n)``; the kernels work on
float32 or float64 (other dtypes take the dense path).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sqsnn.event_threshold import event_density as threshold

PROBE_STRIDE = 16
"""Rows of the input looked at (every PROBE_STRIDE-th) before the exact count decides the path."""
PROBE_MARGIN = 1.25
"""The probed density may exceed the threshold by this factor and still go to the exact count."""


class _EventLinearFn(torch.autograd.Function):
    """``x W^T + b`` from ``x``'s non-zero entries (CSR rows built once; their column view serves the
    weight gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, rows: tuple[Any, Any, Any]) -> Tensor:
        from sqsnn import kernels

        kernels.match_torch_threads()
        w = weight.detach().numpy()
        out = np.empty((rows[0].shape[0] - 1, w.shape[0]), dtype=w.dtype)
        init = bias.detach().numpy() if bias is not None else w[:0, 0]
        kernels.sparse_dense(*rows, w.T, init, bias is not None, out)
        ctx.rows = rows
        ctx.width = x.shape[-1]
        ctx.has_bias = bias is not None
        ctx.save_for_backward(weight)
        return torch.from_numpy(out).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:
        from sqsnn import kernels

        kernels.match_torch_threads()
        (weight,) = ctx.saved_tensors
        g2 = g_out.reshape(-1, weight.shape[0]).contiguous()
        g_x = g_w = g_b = None
        if ctx.needs_input_grad[0]:
            g_x = (g2 @ weight).reshape(*g_out.shape[:-1], ctx.width)
        if ctx.needs_input_grad[1]:
            columns = kernels.transpose_lists(*ctx.rows, ctx.width)  # type: ignore[call-arg]
            g_w_np = np.empty(tuple(weight.shape), dtype=g2.numpy().dtype)
            kernels.sparse_dense(*columns, g2.numpy(), g_w_np[0, :0], False, g_w_np.T)
            g_w = torch.from_numpy(g_w_np)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            g_b = g2.sum(0)
        return g_x, g_w, g_b, None


def spike_rows(x: Tensor, limit: int) -> tuple[Any, Any, Any]:
    """CSR rows of ``x`` flattened to ``(R, D)``: numpy ``(indptr, indices, values)``; only ``indptr`` when
    ``x`` has more than ``limit`` non-zero entries (:func:`sqsnn.kernels.spike_rows`)."""
    from sqsnn import kernels

    kernels.match_torch_threads()
    flat = x.detach().reshape(-1, x.shape[-1]).contiguous().numpy()
    return kernels.spike_rows(flat, limit)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, event_density: float | None = None) -> Tensor:
    """``x W^T (+ b)``: event-driven when ``x`` is on the CPU, float32/float64 like ``weight`` and at most
    ``event_density`` (default: :func:`sqsnn.event_threshold.event_density` of its dtype) of its entries are
    non-zero; dense ``torch.nn.functional.linear`` otherwise. An input whose probed rows (:data:`PROBE_STRIDE`)
    are denser than :data:`PROBE_MARGIN` times the threshold goes dense without the exact count. ``event_density
    = 0`` forces the dense path, ``1`` the event-driven one (tests and benchmarks).
    """
    if event_density is None:
        event_density = threshold(weight.dtype)
    eligible = (
        event_density > 0
        and x.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.float64)
        and x.dtype == weight.dtype
        and (bias is None or bias.dtype == weight.dtype)
        and x.numel() > 0
    )
    if eligible and event_density < 1:
        # A cheap look first: the density of every PROBE_STRIDE-th row. Well above the threshold (hidden
        # layers usually are) the dense product runs without building the rows.
        probe = x.detach().reshape(-1, x.shape[-1])[::PROBE_STRIDE]
        eligible = int(torch.count_nonzero(probe)) <= PROBE_MARGIN * event_density * probe.numel()
    if eligible:
        limit = int(event_density * x.numel())
        rows = spike_rows(x, limit)
        if int(rows[0][-1]) <= limit:
            out: Tensor = _EventLinearFn.apply(x, weight, bias, rows)
            return out
    return torch.nn.functional.linear(x, weight, bias)
