"""``aer`` (ideal) and ``aer-noisy:<fake>`` (noise model of an IBM calibration snapshot).

Ideal circuits are transpiled to ``rx, rzx, rz, h, cx, measure, reset`` (matrix_product_state cannot run
``crx``; this basis has no width cap) and sampled with ``qiskit_aer.primitives.SamplerV2``. Noisy
circuits are transpiled to the fake device's ISA by the preset pass manager with neurons placed by
calibration error rates (:mod:`backends.calibration`), moved onto the physical qubits they use, and
sampled with that device's noise model restricted to those qubits.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from qiskit import QuantumCircuit, QuantumRegister, transpile
from qiskit.transpiler import Target, generate_preset_pass_manager
from qiskit_aer.noise import NoiseModel
from qiskit_aer.noise.device import basic_device_gate_errors, basic_device_readout_errors
from qiskit_aer.primitives import SamplerV2 as AerSampler

from backends.base import Availability, Capabilities
from backends.calibration import calibration_snapshot, select_layout
from backends.common import LayerRequest
from backends.compiler import LayerCircuit
from backends.options import AerOptions
from backends.qiskit_backend import Pub, QiskitBackend

MPS_BASIS = ["rx", "rzx", "rz", "h", "cx", "measure", "reset"]
STATEVECTOR_MAX_QUBITS = 24


@lru_cache(maxsize=8)
def fake_backend(name: str) -> Any:
    """An IBM fake backend (calibration snapshot) by name, e.g. ``fake_kingston``."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    try:
        return QiskitRuntimeService(channel="local").backend(name)
    except Exception as exc:  # the local service raises QiskitBackendNotFoundError
        raise ValueError(f"unknown IBM fake backend {name!r} (e.g. fake_kingston, fake_torino): {exc}") from exc


def sub_target(target: Target, qubits: tuple[int, ...]) -> Target:
    """The part of ``target`` on ``qubits``, re-indexed 0..len(qubits)-1 (same calibration)."""
    index = {q: i for i, q in enumerate(qubits)}
    props = target.qubit_properties
    sub = Target(
        num_qubits=len(qubits),
        dt=target.dt,
        qubit_properties=[props[q] for q in qubits] if props else None,
    )
    for name in target.operation_names:
        op = target.operation_from_name(name)
        entries = target[name]
        if None in entries:  # global (control flow) instruction
            sub.add_instruction(op, None, name=name)
            continue
        local = {tuple(index[q] for q in qargs): p for qargs, p in entries.items() if all(q in index for q in qargs)}
        sub.add_instruction(op, local, name=name)
    return sub


@lru_cache(maxsize=32)
def noise_model(name: str, qubits: tuple[int, ...]) -> NoiseModel:
    """Aer noise model of fake device ``name`` restricted to ``qubits`` (re-indexed 0..m-1).

    Same construction as ``NoiseModel.from_backend`` (readout errors, depolarising + thermal relaxation
    gate errors), but only for the qubits a circuit uses: building and simulating the full 156-qubit model
    costs tens of seconds per run.
    """
    sub = sub_target(fake_backend(name).target, qubits)
    model = NoiseModel(basis_gates=list(sub.operation_names))
    for qargs, error in basic_device_readout_errors(None, target=sub):
        model.add_readout_error(error, qargs)
    for gate, qargs, error in basic_device_gate_errors(None, target=sub):
        model.add_quantum_error(error, gate, qargs)
    return model


def active_qubits(circuit: QuantumCircuit) -> list[int]:
    """Indices of the qubits that some instruction of ``circuit`` touches."""
    return sorted({circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits})


def compact(circuit: QuantumCircuit, qubits: list[int]) -> QuantumCircuit:
    """``circuit`` moved onto ``len(qubits)`` qubits: physical qubit ``qubits[i]`` becomes qubit i."""
    index = {q: i for i, q in enumerate(qubits)}
    out = QuantumCircuit(QuantumRegister(len(qubits), "q"), *circuit.cregs)
    for inst in circuit.data:
        out.append(inst.operation, [out.qubits[index[circuit.find_bit(q).index]] for q in inst.qubits], inst.clbits)
    return out


def compact_pubs(pubs: list[Pub]) -> tuple[list[Pub], tuple[int, ...]]:
    """Move device-wide ISA PUBs onto the union of their active physical qubits (for simulation)."""
    used = sorted(set().union(*(active_qubits(c) for c, _, _ in pubs)))
    return [(compact(c, used), v, s) for c, v, s in pubs], tuple(used)


def isa_transpile(
    lc: LayerCircuit, device: Any, *, choose_layout: bool, optimization_level: int = 1
) -> tuple[QuantumCircuit, dict[str, Any]]:
    """ISA circuit for ``device`` and the calibration snapshot of the physical qubits it uses."""
    layout = select_layout(device.target, lc.n) if choose_layout and lc.layout == "mid-circuit" else None
    pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=device, initial_layout=layout)
    isa = pm.run(lc.circuit)
    physical = list(isa.layout.initial_index_layout()[: lc.num_qubits])
    snapshot = calibration_snapshot(device, physical)
    snapshot["layout"] = physical
    snapshot["layout_from_calibration"] = layout is not None
    return isa, snapshot


class AerBackend(QiskitBackend):
    """Aer sampling of the packed circuits; ``device`` names a fake backend for the noisy variant."""

    def __init__(self, device: str | None = None, options: AerOptions | None = None) -> None:
        super().__init__()
        self.options = options or AerOptions()
        self.device = device
        self.name = f"aer-noisy:{device}" if device else "aer"
        self.layout = self.options.layout
        self.per_circuit = self.options.neurons_per_circuit
        if device is not None:
            fake_backend(device)  # fail early on an unknown name

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        return 0.0, "local simulator"

    def capabilities(self) -> Capabilities:
        width = fake_backend(self.device).num_qubits if self.device else None
        if self.options.method == "statevector":
            width = STATEVECTOR_MAX_QUBITS
        return Capabilities(
            provider="aer",
            mid_circuit_measurement=True,
            reset=True,
            readable_mid_circuit=True,
            hardware=False,
            noisy=self.device is not None,
            parameter_batches=True,
            modes=("quantum", "memoryless"),
            max_qubits=width,
        )

    def availability(self) -> Availability:
        return Availability(True, "local simulator")

    def _transpile(self, lc: LayerCircuit) -> tuple[QuantumCircuit, dict[str, Any] | None]:
        if self.device is None:
            return transpile(lc.circuit, basis_gates=MPS_BASIS, optimization_level=0), None
        return isa_transpile(lc, fake_backend(self.device), choose_layout=self.options.choose_layout)

    def _run(self, pubs: list[Pub], request: LayerRequest) -> Any:
        backend_options: dict[str, Any] = {
            "method": self.options.method,
            "max_parallel_threads": self.options.threads,
        }
        if self.device is not None:
            pubs, used = compact_pubs(pubs)
            backend_options["noise_model"] = noise_model(self.device, used)
        sampler = AerSampler(
            default_shots=request.shots, seed=request.seed, options={"backend_options": backend_options}
        )
        return sampler.run(pubs)
