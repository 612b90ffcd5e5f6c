"""Qubit placement from calibration error rates, and the calibration snapshot kept with each result.

Works on any Qiskit ``BackendV2`` (IBM fake snapshots, real IBM backends). A neuron needs a coupled pair
(memory, I/O); pairs of different neurons need no coupling. A pair is scored by the errors that touch its
spikes: readout and reset error of the I/O qubit, the two-qubit gate error on the pair and the ``sx``
errors of both. Pairs are chosen greedily by score, disjoint.
"""

from __future__ import annotations

from typing import Any

from qiskit.transpiler import Target


def _error(target: Target, op: str, qargs: tuple[int, ...]) -> float:
    if op not in target.operation_names:
        return 0.0
    props = target[op].get(qargs)
    if props is None or props.error is None:
        return 0.0
    return float(props.error)


def two_qubit_gate(target: Target) -> str:
    """Name of the target's native two-qubit gate (``cz``, ``ecr``, ``cx``)."""
    for name in ("cz", "ecr", "cx"):
        if name in target.operation_names:
            return name
    raise ValueError(f"target has no two-qubit gate among cz/ecr/cx: {sorted(target.operation_names)}")


def pair_score(target: Target, memory: int, io: int, gate: str) -> float:
    """Summed error probability affecting one neuron placed on (memory, io)."""
    two = _error(target, gate, (memory, io)) or _error(target, gate, (io, memory))
    return (
        _error(target, "measure", (io,))
        + _error(target, "reset", (io,))
        + two
        + _error(target, "sx", (io,))
        + _error(target, "sx", (memory,))
    )


def select_layout(target: Target, neurons: int) -> list[int]:
    """Physical qubits for virtual qubits ``[mem_0, io_0, mem_1, io_1, ...]`` chosen by error rates."""
    gate = two_qubit_gate(target)
    edges = {tuple(q) for q in target[gate] if q is not None and len(q) == 2}
    scored = sorted((pair_score(target, a, b, gate), a, b) for (a, b) in edges | {(b, a) for (a, b) in edges})
    used: set[int] = set()
    layout: list[int] = []
    for _, mem, io in scored:
        if mem in used or io in used:
            continue
        layout += [mem, io]
        used |= {mem, io}
        if len(layout) == 2 * neurons:
            return layout
    raise ValueError(f"device has only {len(layout) // 2} disjoint coupled qubit pairs; {neurons} needed")


def calibration_snapshot(backend: Any, physical_qubits: list[int]) -> dict[str, Any]:
    """JSON-ready calibration of the qubits a circuit ran on: readout/reset/sx errors, T1/T2 (s) per
    qubit and the two-qubit gate error of every used coupled pair, plus the calibration timestamp."""
    target: Target = backend.target
    props = backend.properties() if hasattr(backend, "properties") else None
    updated = getattr(props, "last_update_date", None)
    qubits: dict[str, dict[str, float | None]] = {}
    for q in physical_qubits:
        qp = target.qubit_properties[q] if target.qubit_properties else None
        qubits[str(q)] = {
            "readout_error": _error(target, "measure", (q,)),
            "reset_error": _error(target, "reset", (q,)),
            "sx_error": _error(target, "sx", (q,)),
            "t1_s": getattr(qp, "t1", None),
            "t2_s": getattr(qp, "t2", None),
        }
    gate = two_qubit_gate(target)
    pairs = {
        f"{a}-{b}": _error(target, gate, (a, b)) or _error(target, gate, (b, a))
        for a, b in zip(physical_qubits[::2], physical_qubits[1::2], strict=True)
    }
    return {
        "backend": backend.name,
        "calibrated_at": updated.isoformat() if updated is not None else None,
        "two_qubit_gate": gate,
        "qubits": qubits,
        "pairs": pairs,
    }
