"""Bit-packing of spike trains for the API and the event stream.

A spike tensor ``(T, B, n)`` of 0/1 becomes, per sample b, the bits ``s[t, b, j]`` in the order
t-major then neuron (index ``t * n + j``), packed most-significant bit first (``numpy.packbits``),
then base64. ``unpack`` inverts it.
"""

from __future__ import annotations

import base64

import numpy as np
import torch


def pack(spikes: torch.Tensor) -> list[str]:
    """(T, B, n) 0/1 spikes → B base64 strings of ceil(T*n/8) bytes each."""
    T, B, n = spikes.shape
    bits = spikes.detach().permute(1, 0, 2).reshape(B, T * n).to(torch.uint8).cpu().numpy()
    packed = np.packbits(bits, axis=1)
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in packed]


def unpack(samples: list[str], T: int, n: int) -> np.ndarray:
    """Inverse of ``pack``: returns a (T, B, n) uint8 array."""
    rows = [np.unpackbits(np.frombuffer(base64.b64decode(s), dtype=np.uint8))[: T * n] for s in samples]
    return np.stack(rows).reshape(len(samples), T, n).transpose(1, 0, 2)
