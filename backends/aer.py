"""``aer`` (ideal) and ``aer-noisy:<fake>`` (noise model of an IBM calibration snapshot).

Ideal circuits are transpiled to ``rx, rzx, rz, h, cx, measure, reset`` (matrix_product_state cannot run
``crx``; this basis has no width cap) and sampled with ``qiskit_aer.primitives.SamplerV2``. Noisy
circuits are transpiled to the fake device's ISA by the preset pass manager with neurons placed by
calibration error rates (:mod:`backends.calibration`), and sampled with that device's noise model.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from qiskit import QuantumCircuit, transpile
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer.noise import NoiseModel
from qiskit_aer.primitives import SamplerV2 as AerSampler

from backends.base import Availability, Capabilities
from backends.calibration import calibration_snapshot, select_layout
from backends.compiler import LayerCircuit
from backends.options import AerOptions
from backends.qiskit_backend import QiskitBackend

MPS_BASIS = ["rx", "rzx", "rz", "h", "cx", "measure", "reset"]
STATEVECTOR_MAX_QUBITS = 24


@lru_cache(maxsize=8)
def fake_backend(name: str) -> Any:
    """An IBM fake backend (calibration snapshot) by name, e.g. ``fake_kingston``."""
    from qiskit_ibm_runtime import QiskitRuntimeLocalService

    try:
        return QiskitRuntimeLocalService().backend(name)
    except Exception as exc:  # the local service raises QiskitBackendNotFoundError
        raise ValueError(
            f"unknown IBM fake backend {name!r} (e.g. fake_kingston, fake_torino): {exc}"
        ) from exc


@lru_cache(maxsize=8)
def noise_model(name: str) -> NoiseModel:
    return NoiseModel.from_backend(fake_backend(name))


def isa_transpile(
    lc: LayerCircuit, device: Any, *, choose_layout: bool, optimization_level: int = 1
) -> tuple[QuantumCircuit, dict[str, Any]]:
    """ISA circuit for ``device`` and the calibration snapshot of the physical qubits it uses."""
    layout = select_layout(device.target, lc.n) if choose_layout and lc.layout == "mid-circuit" else None
    pm = generate_preset_pass_manager(
        optimization_level=optimization_level, backend=device, initial_layout=layout
    )
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

    def _run(self, pubs: list[tuple[QuantumCircuit, np.ndarray, int]], shots: int, seed: int | None) -> Any:
        backend_options: dict[str, Any] = {"method": self.options.method}
        if self.device is not None:
            backend_options["noise_model"] = noise_model(self.device)
        sampler = AerSampler(default_shots=shots, seed=seed, options={"backend_options": backend_options})
        return sampler.run(pubs)
