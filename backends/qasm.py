"""OpenQASM 3 exports of a compiled layer.

Two forms:

* ``simulator``: ``qiskit.qasm3.dumps(circuit, includes=[])`` of a circuit with every angle bound. It
  defines each gate down to ``U`` and uses ``ctrl @`` (simulator features; Braket's local simulators
  accept it below 11 qubits).
* ``native``: written here with only gate names that Braket devices accept without definitions (``rx``,
  ``rz``, ``h``, ``cnot``), ``measure`` and ``reset``. CRX is decomposed as
  ``h t; rz(a/2) t; cnot c,t; rz(-a/2) t; cnot c,t; h t`` (exact). Angles stay symbolic as
  ``input float`` declarations (``phi_<i>``, ``theta_<i>``: the indices of ``LayerCircuit.phi`` /
  ``.theta``; ``alpha_<k>`` for a prepared memory), so one program serves a whole batch;
  ``program_inputs`` gives each sample's values.

Both forms use one classical register ``bit[n*T] spikes`` with bit ``t * n + k`` = neuron k at step t, and
emit measurements in bit order, so a result row's columns are the bits in order.
"""

from __future__ import annotations

import numpy as np
from qiskit import qasm3

from backends.compiler import CREG_NAME, LayerCircuit, bind_matrix


def simulator_qasm(lc: LayerCircuit, z: np.ndarray, angles: np.ndarray) -> str:
    """OpenQASM 3 of the layer with sample 0's angles bound; ``z`` (T, 1, n), ``angles`` (3, n)."""
    values = bind_matrix(lc, lc.circuit, z, angles)[0]
    bound = lc.circuit.assign_parameters(dict(zip(lc.circuit.parameters, values, strict=True)))
    return qasm3.dumps(bound, includes=[])


def _phi(i: int) -> str:
    return f"phi_{i}"


def _theta(i: int) -> str:
    return f"theta_{i}"


def native_qasm(lc: LayerCircuit) -> str:
    """Parameterised OpenQASM 3 of the layer in Braket built-in gate names (see module docstring)."""
    n, T = lc.n, lc.T
    lines = ["OPENQASM 3.0;"]
    lines += [f"input float {_phi(i)};" for i in range(T * n)]
    lines += [f"input float {_theta(i)};" for i in range(3 * n)]
    if lc.alpha is not None:
        lines += [f"input float alpha_{k};" for k in range(n)]
    lines += [f"qubit[{lc.num_qubits}] q;", f"bit[{n * T}] {CREG_NAME};"]
    if lc.alpha is not None:
        lines += [f"rx(alpha_{k}) q[{lc.memory_qubits[k]}];" for k in range(n)]
    for t in range(T):
        for k in range(n):
            m, q = lc.memory_qubits[k], lc.io_qubits[k][t]
            ent = _theta(3 * k)
            if lc.memory == "memoryless" and t > 0:
                lines.append(f"reset q[{m}];")
            lines += [
                f"rx({_phi(t * n + k)}) q[{q}];",
                f"h q[{q}];",
                f"rz({ent} / 2) q[{q}];",
                f"cnot q[{m}], q[{q}];",
                f"rz(-{ent} / 2) q[{q}];",
                f"cnot q[{m}], q[{q}];",
                f"h q[{q}];",
                f"rx({_theta(3 * k + 1)}) q[{m}];",
                f"rx({_theta(3 * k + 2)}) q[{q}];",
            ]
            if lc.layout == "mid-circuit":
                lines.append(f"{CREG_NAME}[{t * n + k}] = measure q[{q}];")
                if t < T - 1:
                    lines.append(f"reset q[{q}];")
    if lc.layout == "deferred":
        lines += [f"{CREG_NAME}[{t * n + k}] = measure q[{lc.io_qubits[k][t]}];" for t in range(T) for k in range(n)]
    return "\n".join(lines) + "\n"


def program_inputs(
    lc: LayerCircuit, z: np.ndarray, angles: np.ndarray, memory_angles: np.ndarray | None = None
) -> list[dict[str, float]]:
    """Per-sample ``inputs`` for ``native_qasm``: z (T, B, n), angles (3, n) or (3, B, n), memory_angles
    (B, n) when the circuit prepares the memory."""
    values = bind_matrix(lc, lc.circuit, z, angles, memory_angles)
    index = {p: i for i, p in enumerate(lc.circuit.parameters)}
    names = [(_phi(i), index[p]) for i, p in enumerate(lc.phi)]
    names += [(_theta(i), index[p]) for i, p in enumerate(lc.theta)]
    names += [(f"alpha_{i}", index[p]) for i, p in enumerate(lc.alpha or [])]
    return [{name: float(row[col]) for name, col in names} for row in values]
