r"""Heaviside spike function with the fast-sigmoid (SuperSpike) surrogate gradient.

Forward: :math:`s = 1[u > 0]`. Backward: :math:`\partial s/\partial u = 1 / (1 + k|u|)^2` with slope
:math:`k` (dimensionless, in units of ``1/u``). Shared by the deterministic baselines (LIF, QLIF).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _FastSigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad_output / (1.0 + ctx.slope * u.abs()) ** 2, None


def spike_fn(u: Tensor, slope: float) -> Tensor:
    """Spikes ``1[u > 0]`` (same shape as ``u``) whose gradient is the fast-sigmoid surrogate."""
    out: Tensor = _FastSigmoidSpike.apply(u, slope)
    return out
