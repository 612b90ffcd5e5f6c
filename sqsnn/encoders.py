"""Input encoders: turn a dataset's samples into time-major spike tensors ``(T, B, D)``.

Two kinds of data reach a network:

* ``"static"`` — intensities ``x`` of shape ``(B, D)`` in ``[0, 1]`` (images). They are **rate coded**:
  at every step ``t = 1..T`` input channel ``d`` of sample ``b`` spikes independently with probability

  .. math:: P(s_{t,b,d} = 1) = \\min(x_{b,d},\\ p_{\\max}),

  so the expected spike count of a channel over ``T`` steps is ``T * min(x, p_max)``. The reference
  SQSNN experiments use ``p_max = 0.5``.
* ``"frames"`` — event frames of shape ``(B, T, D)`` (neuromorphic recordings binned in time). They
  already carry time; :func:`frames_encode` only makes them time-major and binary (any event count > 0
  becomes a spike).

All outputs hold exactly ``0.0`` / ``1.0``.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

DataKind = Literal["static", "frames"]
"""``"static"``: ``(N, D)`` intensities in [0, 1]; ``"frames"``: ``(N, T, D)`` event frames."""

DATA_KINDS: tuple[str, ...] = get_args(DataKind)


def _check_steps(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (number of time steps) must be a positive integer, got {T!r}")


def rate_encode(x: Tensor, T: int, p_max: float, generator: torch.Generator) -> Tensor:
    """Rate-code intensities into independent Bernoulli spike trains.

    Args:
        x: ``(B, D)`` floating-point intensities in ``[0, 1]``.
        T: number of time steps (>= 1).
        p_max: cap on the per-step spike probability, in ``(0, 1]``.
        generator: the ``torch.Generator`` that draws every spike (same device as ``x``): one key per
            step, expanded by Philox4x32-10 (:func:`sqsnn.kernels.draw_uniforms`); the same generator
            state gives the same spikes.

    Returns:
        ``(T, B, D)`` tensor of ``x``'s dtype holding 0.0 / 1.0, with
        ``s[t, b, d] ~ Bernoulli(min(x[b, d], p_max))`` independently over ``t, b, d``.

    Raises:
        ValueError: ``x`` is not a 2-D floating tensor with finite values in ``[0, 1]``, ``T`` is not a
            positive integer, ``p_max`` is outside ``(0, 1]`` or the generator lives on another device.
    """
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"rate_encode expects intensities of shape (B, D), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"rate_encode expects a floating-point tensor, got dtype {x.dtype}")
    _check_steps(T)
    if isinstance(p_max, bool) or not isinstance(p_max, int | float) or not 0.0 < p_max <= 1.0:
        raise ValueError(f"p_max must lie in (0, 1], got {p_max!r}")
    if x.numel() and not (torch.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        lo, hi = float(x.min()), float(x.max())
        raise ValueError(f"rate_encode expects intensities in [0, 1], got values in [{lo}, {hi}]")
    if generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; use one device")
    from sqsnn import kernels

    p = x.clamp(max=float(p_max))
    # u ~ U[0, 1) on the float grid of x's kernel dtype (Philox4x32-10, one key per step from generator):
    # P(u < p) = p for p on that grid, and p = 0 never spikes.
    u = kernels.draw_uniforms((T, *x.shape), generator, x.dtype).to(x.device)
    return (u < p.to(u.dtype)).to(x.dtype)


def frames_encode(frames: Tensor) -> Tensor:
    """Make event frames time-major and binary.

    Args:
        frames: ``(B, T, D)`` non-negative event counts (or 0/1 frames).

    Returns:
        ``(T, B, D)`` tensor with ``s[t, b, d] = 1`` if ``frames[b, t, d] > 0`` else ``0``; the dtype is
        ``frames``' dtype when floating point, float64 otherwise.

    Raises:
        ValueError: ``frames`` is not 3-D or holds negative or non-finite values.
    """
    if not isinstance(frames, Tensor) or frames.dim() != 3:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        raise ValueError(f"frames_encode expects frames of shape (B, T, D), got {shape}")
    if frames.dtype == torch.bool:
        frames = frames.to(torch.uint8)
    if frames.numel():
        if frames.is_floating_point() and not torch.isfinite(frames).all():
            raise ValueError("frames_encode expects finite event counts, got NaN or inf")
        if frames.min() < 0:
            raise ValueError(f"frames_encode expects non-negative event counts, got {float(frames.min())}")
    dtype = frames.dtype if frames.is_floating_point() else torch.float64
    return (frames > 0).to(dtype).permute(1, 0, 2).contiguous()


def encode(x: Tensor, kind: DataKind, T: int, p_max: float, generator: torch.Generator) -> Tensor:
    """Encode a batch of samples of either kind into ``(T, B, D)`` spikes.

    Args:
        x: ``(B, D)`` intensities when ``kind == "static"``; ``(B, T, D)`` frames when ``kind == "frames"``.
        kind: ``"static"`` (rate coding with :func:`rate_encode`) or ``"frames"`` (:func:`frames_encode`).
        T: number of time steps. For frames it must equal the frames' own length ``x.shape[1]`` (the
            time bins were fixed when the dataset was loaded).
        p_max: rate-coding cap in ``(0, 1]`` (used for ``"static"`` only).
        generator: random source for rate coding (unused for frames, which are deterministic).

    Raises:
        ValueError: unknown ``kind``, a frames length different from ``T``, or any error of the encoders.
    """
    if kind == "static":
        return rate_encode(x, T, p_max, generator)
    if kind == "frames":
        _check_steps(T)
        if isinstance(x, Tensor) and x.dim() == 3 and x.shape[1] != T:
            raise ValueError(
                f"frames hold {x.shape[1]} time bins per sample but T={T}; use T={x.shape[1]} or reload "
                f"the dataset with T={T} time bins"
            )
        return frames_encode(x)
    raise ValueError(f"unknown input kind {kind!r}; expected one of {', '.join(DATA_KINDS)}")
