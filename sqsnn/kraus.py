r"""General SQS neuron: N I/O qubits and N_M memory qubits, simulated with Kraus operators.

The trainable circuit V is a stack of L layers that reduces exactly to the paper's circuit when
N = N_M = L = 1. Each layer applies, in this order:

1. ``CRX(theta_ent[l, m, n])`` with control memory qubit m and target I/O qubit n, for m = 0..N_M-1 (outer)
   and n = 0..N-1 (inner);
2. ``RX(theta_mem[l, m])`` on every memory qubit and ``RX(theta_in[l, n])`` on every I/O qubit.

One step: embed ``RX(pi * max(z_n, 0))`` on I/O qubit n, apply V, measure every I/O qubit, reset them.
With ``U`` the step unitary, the Kraus operator of outcome s on the memory is
:math:`A_s = (\langle s|_{IO} \otimes I_M)\, U\, (|0\rangle_{IO} \otimes I_M)`,
:math:`p(s) = \mathrm{Tr}(A_s \sigma A_s^\dagger)` and :math:`\sigma \to A_s \sigma A_s^\dagger / p(s)`.

Conventions: an outcome index k encodes I/O qubit n's bit as ``(k >> n) & 1``; a memory basis index
encodes memory qubit 0 as its most significant bit. Shapes carry arbitrary leading "neuron batch" dims
``...`` that broadcast between currents and parameters. Everything is complex128 and differentiable.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class GeneralParams(NamedTuple):
    """Angles of general neurons (radians): ``theta_ent (..., L, N_M, N)``, ``theta_mem (..., L, N_M)``,
    ``theta_in (..., L, N)``."""

    theta_ent: Tensor
    theta_mem: Tensor
    theta_in: Tensor

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(L, N, N_M)``: circuit layers, I/O qubits, memory qubits."""
        layers, n_mem, n_io = self.theta_ent.shape[-3:]
        return layers, n_io, n_mem


def rx_matrix(angle: Tensor) -> Tensor:
    """RX(angle) as complex ``(..., 2, 2)`` for a real ``(...)`` angle."""
    c = torch.cos(0.5 * angle).to(torch.complex128)
    s = torch.sin(0.5 * angle).to(torch.complex128)
    ms = -1j * s
    return torch.stack([torch.stack([c, ms], -1), torch.stack([ms, c], -1)], -2)


def _apply_1q(psi: Tensor, gate: Tensor, axis: int, n_axes: int) -> Tensor:
    """Apply ``gate (..., 2, 2)`` to qubit axis ``axis`` of ``psi (..., D, 2, ..., 2)`` (``n_axes`` qubits)."""
    moved = psi.movedim(psi.dim() - n_axes + axis, -1)
    g = gate.reshape(gate.shape[:-2] + (1,) * n_axes + (2, 2))
    out = (g @ moved.unsqueeze(-1)).squeeze(-1)
    return out.movedim(-1, psi.dim() - n_axes + axis)


def _apply_crx(psi: Tensor, angle: Tensor, control: int, target: int, n_axes: int) -> Tensor:
    """Controlled RX(angle) (``angle (...)``) with qubit axes ``control`` and ``target``."""
    ax = psi.dim() - n_axes + control
    off, on = psi.narrow(ax, 0, 1), psi.narrow(ax, 1, 1)
    return torch.cat([off, _apply_1q(on, rx_matrix(angle), target, n_axes)], dim=ax)


def kraus_operators(z: Tensor, params: GeneralParams) -> Tensor:
    """Kraus operators of one step.

    Args:
        z: currents ``(..., N)``.
        params: see :class:`GeneralParams`.

    Returns:
        ``(..., 2**N, D, D)`` with D = 2**N_M: ``A[k]`` maps the memory entering the step to the
        unnormalised memory after outcome k.
    """
    layers, n_io, n_mem = params.sizes
    n_axes = n_io + n_mem
    dim_m = 2**n_mem
    batch = torch.broadcast_shapes(z.shape[:-1], params.theta_ent.shape[:-3])
    start = torch.zeros((dim_m,) + (2,) * n_io + (dim_m,), dtype=torch.complex128, device=z.device)
    start[(slice(None),) + (0,) * n_io + (slice(None),)] = torch.eye(dim_m, dtype=torch.complex128)
    psi = start.reshape((dim_m,) + (2,) * n_axes).expand(batch + (dim_m,) + (2,) * n_axes)
    phi = math.pi * torch.clamp(z, min=0.0)
    for n in range(n_io):
        psi = _apply_1q(psi, rx_matrix(phi[..., n]), n, n_axes)
    for layer in range(layers):
        for m in range(n_mem):
            for n in range(n_io):
                psi = _apply_crx(psi, params.theta_ent[..., layer, m, n], n_io + m, n, n_axes)
        for m in range(n_mem):
            psi = _apply_1q(psi, rx_matrix(params.theta_mem[..., layer, m]), n_io + m, n_axes)
        for n in range(n_io):
            psi = _apply_1q(psi, rx_matrix(params.theta_in[..., layer, n]), n, n_axes)
    lead = psi.dim() - n_axes - 1
    # (..., j_in, io_0..io_{N-1}, mem) -> (..., io_{N-1}..io_0, mem, j_in): little-endian outcome index
    perm = list(range(lead)) + [lead + 1 + n for n in reversed(range(n_io))]
    perm += [lead + 1 + n_io + m for m in range(n_mem)] + [lead]
    return psi.permute(perm).reshape(batch + (2**n_io, dim_m, dim_m))


def outcome_probabilities(sigma: Tensor, kraus: Tensor) -> Tensor:
    """``p[k] = Tr(A_k sigma A_k^dagger)`` for ``sigma (..., D, D)`` and ``kraus (..., K, D, D)``: ``(..., K)``."""
    return torch.einsum("...kij,...jl,...kil->...k", kraus, sigma, kraus.conj()).real


def initial_memory(shape: tuple[int, ...], n_mem: int, device: torch.device | None = None) -> Tensor:
    """Memory density matrices ``|0..0><0..0|`` of shape ``shape + (D, D)``."""
    dim = 2**n_mem
    sigma = torch.zeros(shape + (dim, dim), dtype=torch.complex128, device=device)
    sigma[..., 0, 0] = 1
    return sigma


def kraus_trajectory(z: Tensor, params: GeneralParams, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Single-shot trajectories of general neurons.

    Args:
        z: currents ``(T, ..., N)``; ``...`` broadcasts with the parameters' leading dims.
        generator: source of the single-shot randomness (one uniform draw per neuron and step).

    Returns:
        ``(spikes, probs)``: spikes ``(T, ..., N)`` in {0, 1} and the per-qubit spike probabilities
        ``(T, ..., N)`` given the sampled history (marginals of the outcome distribution).
    """
    _, n_io, n_mem = params.sizes
    steps = z.shape[0]
    batch = torch.broadcast_shapes(z.shape[1:-1], params.theta_ent.shape[:-3])
    sigma = initial_memory(batch, n_mem, z.device)
    bits = (torch.arange(2**n_io, device=z.device)[:, None] >> torch.arange(n_io, device=z.device)) & 1
    spikes, probs = [], []
    for t in range(steps):
        kraus = kraus_operators(z[t], params)
        p = outcome_probabilities(sigma, kraus).clamp(min=0.0)
        u = torch.rand(batch + (1,), generator=generator, dtype=torch.float64, device=z.device)
        cdf = torch.cumsum(p, dim=-1)
        k = torch.clamp((cdf.detach() <= u).sum(dim=-1), max=2**n_io - 1)
        a = torch.gather(kraus, -3, k[..., None, None, None].expand(batch + (1,) + kraus.shape[-2:])).squeeze(-3)
        new = a @ sigma @ a.conj().transpose(-1, -2)
        sigma = new / torch.diagonal(new, dim1=-2, dim2=-1).real.sum(-1)[..., None, None]
        spikes.append(bits[k].to(torch.float64))
        probs.append(p @ bits.to(p.dtype))
    return torch.stack(spikes), torch.stack(probs)


def joint_distribution(z: Tensor, params: GeneralParams) -> Tensor:
    """Exact probability of every outcome history.

    Args:
        z: currents ``(..., T, N)``.

    Returns:
        ``(..., 2**(N*T))``; history index ``sum_t k_t * (2**N)**t`` with k_t the outcome index at step t.
    """
    n_mem = params.sizes[2]
    steps = z.shape[-2]
    batch = torch.broadcast_shapes(z.shape[:-2], params.theta_ent.shape[:-3])
    sigma = initial_memory(batch + (1,), n_mem, z.device)
    for t in range(steps):
        kraus = kraus_operators(z[..., t, :], params)  # (..., K, D, D)
        branched = (
            kraus[..., :, None, :, :] @ sigma[..., None, :, :, :] @ kraus.conj().transpose(-1, -2)[..., :, None, :, :]
        )  # (..., K, H, D, D)
        sigma = branched.reshape(batch + (-1,) + branched.shape[-2:])
    return torch.diagonal(sigma, dim1=-2, dim2=-1).real.sum(-1)
