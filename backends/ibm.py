"""``ibm:<backend>`` (IBM Quantum via qiskit-ibm-runtime) and ``ibm-local:<fake>`` (its local testing mode).

Both share one client path: ISA transpile with the preset pass manager and a layout chosen from
calibration error rates, a ``Batch`` execution mode, the executor ``Sampler`` with one PUB per chunk,
job tags for de-duplication, job states normalised by :func:`backends.base.normalise_state`. Only the
backend object differs: the real one from ``QiskitRuntimeService()`` (credentials from the SDK's standard
environment variables ``QISKIT_IBM_TOKEN`` / ``QISKIT_IBM_INSTANCE`` / ``QISKIT_IBM_CHANNEL`` or the saved
account; never logged), or, locally, an Aer simulator built from the fake device (its noise model, or no
noise with ``IBMOptions(noise=False)``), on which local mode runs the same client code. Locally the ISA
circuits are moved onto the physical qubits they use before simulation (156-qubit noisy simulation costs
tens of seconds per run); the noise model is that of those qubits.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from backends.aer import compact_pubs, fake_backend, isa_transpile, noise_model
from backends.base import Availability, BackendUnavailable, Capabilities, LayerResult, SubmittedJob
from backends.common import LayerRequest
from backends.compiler import LayerCircuit
from backends.options import IBMOptions
from backends.qiskit_backend import Pub, QiskitBackend
from backends.redact import redact


@lru_cache(maxsize=32)
def local_simulator(device: str, qubits: tuple[int, ...] | None) -> AerSimulator:
    """Execution target of ``ibm-local``: MPS Aer with the fake device's noise on ``qubits`` (None: ideal)."""
    if qubits is None:
        return AerSimulator(method="matrix_product_state", max_parallel_threads=1)
    return AerSimulator(method="matrix_product_state", max_parallel_threads=1, noise_model=noise_model(device, qubits))


def batch_tag(pubs: list[Pub], device: str) -> str:
    """Deterministic job tag of a submission (same circuits, values and shots -> same tag)."""
    h = hashlib.sha256(device.encode())
    for circuit, values, shots in pubs:
        h.update(f"{circuit.num_qubits}:{circuit.size()}:{sorted(circuit.count_ops().items())}:{shots}".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return "sqsnn-" + h.hexdigest()[:24]


class IBMRuntimeBackend(QiskitBackend):
    """IBM Runtime backend; ``local=True`` runs the fake snapshot ``device`` in local testing mode."""

    def __init__(self, device: str, *, local: bool, options: IBMOptions | None = None) -> None:
        super().__init__()
        self.device_name = device
        self.local = local
        self.options = options or IBMOptions()
        self.name = f"ibm-local:{device}" if local else f"ibm:{device}"
        self.per_circuit = self.options.neurons_per_circuit
        self._device: Any = None
        self._service: Any = None
        self._by_tag: dict[str, Any] = {}

    def device(self) -> Any:
        """The Qiskit backend (fake snapshot or real); raises BackendUnavailable when unreachable."""
        if self._device is None:
            if self.local:
                self._device = fake_backend(self.device_name)
            else:
                from qiskit_ibm_runtime import QiskitRuntimeService

                try:
                    self._service = QiskitRuntimeService()
                    self._device = self._service.backend(self.device_name)
                except Exception as exc:  # offline construction fails with an opaque AttributeError
                    cause = f"{type(exc).__name__}: {redact(str(exc))}"
                    raise BackendUnavailable(
                        f"{self.name}: IBM Quantum is not reachable ({cause}); "
                        "set QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE or save an account"
                    ) from None
        return self._device

    def availability(self) -> Availability:
        try:
            device = self.device()
        except BackendUnavailable as exc:
            return Availability(False, str(exc))
        if not self.local:
            status = device.status()
            if not status.operational:
                return Availability(False, f"{self.name}: backend not operational ({status.status_msg})")
            return Availability(True, f"operational, {status.pending_jobs} pending jobs")
        return Availability(True, "local testing mode")

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        if self.local:
            return 0.0, "local testing mode"
        return None, "IBM Quantum bills QPU time, not shots: no per-shot price"

    def capabilities(self) -> Capabilities:
        device = self.device()
        ops = device.target.operation_names
        config = device.configuration() if hasattr(device, "configuration") else None
        return Capabilities(
            provider="ibm",
            mid_circuit_measurement="measure" in ops,
            reset="reset" in ops,
            readable_mid_circuit="measure" in ops,
            hardware=not self.local,
            noisy=not self.local or self.options.noise,
            parameter_batches=True,
            modes=("quantum", "memoryless"),
            max_qubits=device.num_qubits,
            max_shots=getattr(config, "max_shots", None),
        )

    def _transpile(self, lc: LayerCircuit) -> tuple[QuantumCircuit, dict[str, Any] | None]:
        return isa_transpile(
            lc,
            self.device(),
            choose_layout=self.options.choose_layout,
            optimization_level=self.options.optimization_level,
        )

    def _existing(self, tag: str) -> Any:
        """A non-failed job already submitted with ``tag`` (de-duplication), or None."""
        if self.local:
            return self._by_tag.get(tag)
        jobs = self._service.jobs(job_tags=[tag], limit=1, backend_name=self.device_name)
        if jobs and str(getattr(jobs[0].status(), "name", jobs[0].status())) not in ("ERROR", "CANCELLED"):
            return jobs[0]
        return None

    def _run(self, pubs: list[Pub], request: LayerRequest) -> Any:
        from qiskit_ibm_runtime import Batch
        from qiskit_ibm_runtime.executor_sampler import Sampler

        device = self.device()
        key = request.idempotency_key
        tag = batch_tag(pubs, f"{self.name}/{key}") if key else None
        if tag is not None and (existing := self._existing(tag)) is not None:
            return existing
        target = device
        if self.local:  # local testing mode simulates the ISA circuits on the qubits they use
            pubs, used = compact_pubs(pubs)
            target = local_simulator(self.device_name, used if self.options.noise else None)
        with Batch(backend=target, max_time=self.options.max_time) as batch:
            sampler = Sampler(mode=batch)
            sampler.options.environment.job_tags = [*([tag] if tag else []), *self.options.job_tags]
            if self.local and request.seed is not None:
                sampler.options.simulator.seed_simulator = request.seed
            job = sampler.run(pubs, shots=request.shots)
        if self.local and tag is not None:
            self._by_tag[tag] = job
        return job

    def _job(self, job: SubmittedJob) -> Any:
        """The provider job: from this process, or (real IBM) retrieved by id after a restart."""
        if job.local_key in self._jobs or self.local:
            return super()._job(job)
        self.device()
        self._jobs[job.local_key] = self._service.job(job.job_ids[0])
        return self._jobs[job.local_key]

    def fetch(self, job: SubmittedJob) -> LayerResult:
        provider_job = self._job(job)
        result = super().fetch(job)
        if not self.local:
            result.usage = {"metrics": provider_job.metrics(), "usage": provider_job.usage()}
        return result
