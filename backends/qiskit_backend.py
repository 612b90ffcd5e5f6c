"""Execution of compiled layers through a Qiskit SamplerV2-style primitive (Aer and IBM Runtime).

One submission = one primitive job holding one PUB per chunk of neurons: ``(circuit, values[B, P],
shots)``. The transpiled circuit of each chunk size is cached, so successive batches (and the shifted
variants of the ``shift`` estimator) reuse it and only bind new values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from backends.base import LayerResult, ProviderState, SubmittedJob, normalise_state
from backends.common import BaseBackend, LayerRequest
from backends.compiler import (
    CREG_NAME,
    LayerCircuit,
    bind_matrix,
    chunk_bounds,
    decode_spikes,
    unpack_bits,
)
from sqsnn.neuron import MemoryMode

Pub = tuple[QuantumCircuit, np.ndarray, int]  # (circuit, parameter values (B, P), shots): one PUB per chunk


class QiskitBackend(BaseBackend):
    """Base of the Qiskit-primitive backends. Subclasses implement ``_transpile`` and ``_run``."""

    per_circuit: int

    def __init__(self) -> None:
        self._compiled: dict[
            tuple[int, int, str, bool], tuple[LayerCircuit, QuantumCircuit, dict[str, Any] | None]
        ] = {}
        self._jobs: dict[str, Any] = {}

    def neurons_per_circuit(self) -> int:
        return self.per_circuit

    def _transpile(self, lc: LayerCircuit) -> tuple[QuantumCircuit, dict[str, Any] | None]:
        """Circuit the provider accepts, and the calibration it will run under (None if ideal)."""
        raise NotImplementedError

    def _run(self, pubs: list[Pub], request: LayerRequest) -> Any:
        """Start one primitive job running ``pubs`` (with ``request``'s shots, seed and idempotency key);
        returns the job object (``job_id()``, ``status()``, ``result()``)."""
        raise NotImplementedError

    def _job(self, job: SubmittedJob) -> Any:
        try:
            return self._jobs[job.local_key]
        except KeyError:
            raise KeyError(f"{self.name}: job {job.job_ids} was not submitted from this process") from None

    def compiled(
        self, n: int, steps: int, mode: MemoryMode, prepare_memory: bool = False
    ) -> tuple[LayerCircuit, QuantumCircuit, dict[str, Any] | None]:
        key = (n, steps, mode, prepare_memory)
        if key not in self._compiled:
            lc = self.layer_circuit(n, steps, mode, prepare_memory)
            self._compiled[key] = (lc, *self._transpile(lc))
        return self._compiled[key]

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        zz, ang, memory_angles = request.z, request.angles, request.memory_angles
        steps, n = request.steps, request.neurons
        chunks = chunk_bounds(n, self.per_circuit)
        pubs: list[Pub] = []
        calibration: dict[str, Any] = {}
        width = 0
        for a, b in chunks:
            lc, circuit, cal = self.compiled(b - a, steps, request.mode, memory_angles is not None)
            width = max(width, lc.num_qubits)
            mem = None if memory_angles is None else np.asarray(memory_angles)[..., a:b]
            pubs.append((circuit, bind_matrix(lc, circuit, zz[:, :, a:b], ang[..., a:b], mem), request.shots))
            if cal is not None:
                calibration[f"{a}:{b}"] = cal
        job = self._run(pubs, request)
        submitted = self._submitted(
            request,
            job_ids=[str(job.job_id())],
            chunks=chunks,
            layout=self.layout,
            qubits_per_circuit=width,
            calibration=calibration or None,
        )
        self._jobs[submitted.local_key] = job
        return submitted

    def poll(self, job: SubmittedJob) -> ProviderState:
        return normalise_state(self._job(job).status())

    def fetch(self, job: SubmittedJob) -> LayerResult:
        result = self._job(job).result()
        parts = []
        for i, (a, b) in enumerate(job.chunks):
            bits = getattr(result[i].data, CREG_NAME)
            unpacked = unpack_bits(bits.array, bits.num_bits)  # (B, S, n*T)
            parts.append(decode_spikes(unpacked, b - a, job.steps))  # (T, B, S, chunk)
        self._jobs.pop(job.local_key, None)
        return LayerResult(
            spikes=np.concatenate(parts, axis=-1),
            backend=self.name,
            job_ids=job.job_ids,
            circuits=len(job.chunks),
            jobs=1,
            shots=job.batch * job.shots * len(job.chunks),
            qubits_per_circuit=job.qubits_per_circuit,
            qubits_used=job.qubits_used,
            calibration=job.calibration,
        )
