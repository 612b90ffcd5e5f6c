"""Compile a layer of N = N_M = 1 SQS neurons into one parameterised Qiskit circuit.

Circuit form (``layout="mid-circuit"``, the hardware form of sqs-model.md §5): neuron k of a chunk of n
neurons owns the neighbouring qubits ``2k`` (memory) and ``2k + 1`` (I/O). Each step t = 0..T-1 applies,
for every neuron k,

    RX(phi[t, k]) on I/O;  CRX(theta_ent[k]) control=memory target=I/O;  RX(theta_mem[k]) on memory;
    RX(theta_in[k]) on I/O;  measure I/O -> spikes[t * n + k];  reset I/O (except after the last step)

(``memory="memoryless"`` also resets the memory qubit at the start of every step t > 0).

Every angle is a circuit parameter: the embedding angle ``phi = pi * max(z, 0)`` (z <= 0 binds 0, the
identity) and the three trainable angles per neuron. Binding the trainable angles, instead of fixing them at
compile time, lets one transpiled circuit serve every sample *and* every parameter-shifted variant of the
``shift`` estimator: a batch is one ``(B, P)`` parameter array, i.e. one PUB.

``layout="deferred"`` is the deferred-measurement form for devices whose mid-circuit results cannot be
read: neuron k owns one memory qubit and T fresh I/O qubits (qubit ``k (T + 1)`` is memory, ``k (T + 1) +
1 + t`` is step t's I/O qubit); nothing is reset and every I/O qubit is measured at the end into the same
classical bit ``t * n + k``. Because the memory never receives feed-forward, the joint spike-train
distribution is identical.

``prepare_memory=True`` adds one more parameter per neuron, ``alpha[k]``: the memory qubit starts in
``RX(alpha)|0>`` (Bloch vector ``(0, -sin alpha, cos alpha)``) instead of ``|0>``. Every memory state this
circuit family reaches along an observed spike history is of that form, so a T = 1 circuit with a prepared
memory measures ``p(s_t | history)`` (what the local rule's estimators need).

One classical register, ``spikes``, of ``n * T`` bits; bit ``t * n + k`` is neuron k's spike at step t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter, ParameterVector

Layout = Literal["mid-circuit", "deferred"]
CircuitMemory = Literal["quantum", "memoryless"]

CREG_NAME = "spikes"


@dataclass(frozen=True)
class LayerCircuit:
    """A compiled chunk of ``n`` neurons over ``T`` steps.

    ``phi[t * n + k]`` is the embedding angle (radians) of neuron k at step t; ``theta[3k + j]`` is neuron
    k's angle j with j = 0 ent, 1 mem, 2 in. ``memory_qubits[k]`` and ``io_qubits[k]`` (one qubit per step,
    or the same qubit repeated for the mid-circuit layout) are virtual qubit indices of ``circuit``.
    """

    circuit: QuantumCircuit
    n: int
    T: int
    layout: Layout
    memory: CircuitMemory
    phi: ParameterVector
    theta: ParameterVector
    alpha: ParameterVector | None
    memory_qubits: tuple[int, ...]
    io_qubits: tuple[tuple[int, ...], ...]

    @property
    def num_qubits(self) -> int:
        return self.circuit.num_qubits

    @property
    def num_bits(self) -> int:
        return self.n * self.T


def compile_layer(
    n: int,
    T: int,
    *,
    layout: Layout = "mid-circuit",
    memory: CircuitMemory = "quantum",
    prepare_memory: bool = False,
) -> LayerCircuit:
    """Build the parameterised circuit of ``n`` neurons (one chunk) over ``T`` steps."""
    if n < 1 or T < 1:
        raise ValueError(f"compile_layer needs n >= 1 and T >= 1, got n={n}, T={T}")
    if layout == "deferred" and memory == "memoryless":
        raise ValueError("the deferred layout cannot reset the memory; use layout='mid-circuit'")
    phi = ParameterVector("phi", T * n)
    theta = ParameterVector("theta", 3 * n)
    if layout == "mid-circuit":
        mem = tuple(2 * k for k in range(n))
        io = tuple((2 * k + 1,) * T for k in range(n))
        width = 2 * n
    elif layout == "deferred":
        mem = tuple(k * (T + 1) for k in range(n))
        io = tuple(tuple(k * (T + 1) + 1 + t for t in range(T)) for k in range(n))
        width = n * (T + 1)
    else:
        raise ValueError(f"unknown layout {layout!r}; expected 'mid-circuit' or 'deferred'")
    creg = ClassicalRegister(n * T, CREG_NAME)
    qc = QuantumCircuit(QuantumRegister(width, "q"), creg)
    alpha = ParameterVector("alpha", n) if prepare_memory else None
    if alpha is not None:
        for k in range(n):
            qc.rx(alpha[k], mem[k])
    for t in range(T):
        for k in range(n):
            m, q = mem[k], io[k][t]
            if memory == "memoryless" and t > 0:
                qc.reset(m)
            qc.rx(phi[t * n + k], q)
            qc.crx(theta[3 * k], m, q)
            qc.rx(theta[3 * k + 1], m)
            qc.rx(theta[3 * k + 2], q)
            if layout == "mid-circuit":
                qc.measure(q, creg[t * n + k])
                if t < T - 1:  # a reset after the last measurement would change nothing
                    qc.reset(q)
    if layout == "deferred":
        for t in range(T):
            for k in range(n):
                qc.measure(io[k][t], creg[t * n + k])
    return LayerCircuit(qc, n, T, layout, memory, phi, theta, alpha, mem, io)


def embedding_angles(z: np.ndarray) -> np.ndarray:
    """Embedding angle ``pi * max(z, 0)`` (radians), same shape as the currents ``z``."""
    return np.pi * np.maximum(np.asarray(z, dtype=np.float64), 0.0)


def bind_matrix(
    lc: LayerCircuit,
    circuit: QuantumCircuit,
    z: np.ndarray,
    angles: np.ndarray,
    memory_angles: np.ndarray | None = None,
) -> np.ndarray:
    """Parameter array of one PUB: one row per sample, columns in ``circuit.parameters`` order.

    ``z``: (T, B, n) input currents. ``angles``: (3, n) (shared by every row) or (3, B, n) (one set of
    angles per row, for shifted variants), rows ent / mem / in, radians. ``circuit`` is ``lc.circuit`` or a
    transpiled copy of it (transpiling may reorder nothing but can drop a parameter: only present ones are
    bound). ``memory_angles`` (B, n): the ``alpha`` of a circuit compiled with ``prepare_memory``.
    Returns a (B, P) float64 array.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 3 or z.shape[0] != lc.T or z.shape[2] != lc.n:
        raise ValueError(f"z must have shape (T={lc.T}, B, n={lc.n}), got {z.shape}")
    B = z.shape[1]
    ang = np.asarray(angles, dtype=np.float64)
    if ang.shape == (3, lc.n):
        ang = np.broadcast_to(ang[:, None, :], (3, B, lc.n))
    if ang.shape != (3, B, lc.n):
        raise ValueError(f"angles must have shape (3, n={lc.n}) or (3, B={B}, n={lc.n}), got {ang.shape}")
    phi_cols = embedding_angles(z).transpose(1, 0, 2).reshape(B, lc.T * lc.n)  # column t * n + k
    theta_cols = ang.transpose(1, 2, 0).reshape(B, 3 * lc.n)  # column 3k + j
    column: dict[Parameter, np.ndarray] = {}
    for i, p in enumerate(lc.phi):
        column[p] = phi_cols[:, i]
    for i, p in enumerate(lc.theta):
        column[p] = theta_cols[:, i]
    if (lc.alpha is None) != (memory_angles is None):
        raise ValueError("memory_angles must be given exactly when the circuit prepares the memory")
    if lc.alpha is not None and memory_angles is not None:
        alpha = np.broadcast_to(np.asarray(memory_angles, dtype=np.float64), (B, lc.n))
        for i, p in enumerate(lc.alpha):
            column[p] = alpha[:, i]
    params = list(circuit.parameters)
    unknown = [p.name for p in params if p not in column]
    if unknown:
        raise ValueError(f"circuit has parameters the layer does not define: {unknown[:5]}")
    out = np.empty((B, len(params)), dtype=np.float64)
    for j, p in enumerate(params):
        out[:, j] = column[p]
    return out


def unpack_bits(packed: np.ndarray, num_bits: int) -> np.ndarray:
    """Unpack a Qiskit ``BitArray.array`` (uint8, big-endian, shape (..., ceil(num_bits / 8))).

    Returns bool (..., num_bits) with column i = classical bit i.
    """
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1)[..., -num_bits:]
    return bits[..., ::-1].astype(bool)


def decode_spikes(bits: np.ndarray, n: int, T: int) -> np.ndarray:
    """Classical bits (..., n*T) with column ``t * n + k`` -> spikes (T, ..., n) float64 0/1."""
    bits = np.asarray(bits)
    if bits.shape[-1] != n * T:
        raise ValueError(f"expected {n * T} bits (n={n}, T={T}), got {bits.shape[-1]}")
    s = bits.reshape(*bits.shape[:-1], T, n).astype(np.float64)
    return np.moveaxis(s, -2, 0)


def chunk_bounds(n: int, per_circuit: int) -> list[tuple[int, int]]:
    """Split neurons 0..n-1 into contiguous chunks of at most ``per_circuit``: [(start, stop), ...]."""
    if per_circuit < 1:
        raise ValueError(f"neurons per circuit must be >= 1, got {per_circuit}")
    return [(a, min(a + per_circuit, n)) for a in range(0, n, per_circuit)]


def memory_angle(bloch_y: np.ndarray, bloch_z: np.ndarray) -> np.ndarray:
    """``alpha`` with ``RX(alpha)|0>`` = the pure memory state of Bloch vector ``(0, y, z)``, radians."""
    return np.arctan2(-np.asarray(bloch_y, dtype=np.float64), np.asarray(bloch_z, dtype=np.float64))


def angles_array(params: object, n: int | None = None) -> np.ndarray:
    """(3, n) or (3, V, n) float64 angles (ent, mem, in) from an ``SQSParams``-like object or array."""
    if isinstance(params, np.ndarray):
        arr = params.astype(np.float64)
    elif isinstance(params, Sequence) and not hasattr(params, "theta_ent"):
        arr = np.stack([_to_numpy(p) for p in params])
    else:
        arr = np.stack(
            [_to_numpy(getattr(params, f)) for f in ("theta_ent", "theta_mem", "theta_in")]  # SQSParams
        )
    if arr.shape[0] != 3 or (n is not None and arr.shape[-1] != n):
        raise ValueError(f"angles must be (3, ..., n={n}) (ent, mem, in), got {arr.shape}")
    return arr


def _to_numpy(x: object) -> np.ndarray:
    detach = getattr(x, "detach", None)
    if detach is not None:
        return np.asarray(detach().cpu().numpy(), dtype=np.float64)
    return np.asarray(x, dtype=np.float64)
