"""Execution of compiled layers through a Qiskit SamplerV2-style primitive (Aer and IBM Runtime).

One submission = one primitive job holding one PUB per chunk of neurons: ``(circuit, values[B, P],
shots)``. The transpiled circuit of each chunk size is cached, so successive batches (and the shifted
variants of the ``shift`` estimator) reuse it and only bind new values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qiskit import QuantumCircuit

from backends.base import BackendRefused, CircuitMode, JobState, LayerResult, SubmittedJob, normalise_state
from backends.common import BaseBackend, check_inputs
from backends.compiler import (
    CREG_NAME,
    LayerCircuit,
    bind_matrix,
    chunk_bounds,
    compile_layer,
    decode_spikes,
    unpack_bits,
)


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

    def _run(
        self,
        pubs: list[tuple[QuantumCircuit, np.ndarray, int]],
        shots: int,
        seed: int | None,
        idempotency_key: str | None,
    ) -> Any:
        """Start one primitive job; returns the job object (``job_id()``, ``status()``, ``result()``)."""
        raise NotImplementedError

    def _job(self, job: SubmittedJob) -> Any:
        try:
            return self._jobs[job.local_key]
        except KeyError:
            raise KeyError(f"{self.name}: job {job.job_ids} was not submitted from this process") from None

    def compiled(
        self, n: int, steps: int, mode: CircuitMode, prepare_memory: bool = False
    ) -> tuple[LayerCircuit, QuantumCircuit, dict[str, Any] | None]:
        key = (n, steps, mode, prepare_memory)
        if key not in self._compiled:
            if mode == "official":
                raise BackendRefused(f"{self.name}: mode 'official' is a classical neuron and has no circuit")
            lc = compile_layer(
                n,
                steps,
                layout=self.layout,
                memory=mode,
                prepare_memory=prepare_memory,
            )
            self._compiled[key] = (lc, *self._transpile(lc))
        return self._compiled[key]

    def submit(
        self,
        z: Any,
        angles: Any,
        *,
        shots: int = 1,
        mode: CircuitMode = "quantum",
        seed: int | None = None,
        idempotency_key: str | None = None,
        memory_angles: np.ndarray | None = None,
    ) -> SubmittedJob:
        zz, ang = check_inputs(z, angles)
        steps, batch, n = zz.shape
        self.check_request(n, steps, shots, mode)
        chunks = chunk_bounds(n, self.per_circuit)
        pubs: list[tuple[QuantumCircuit, np.ndarray, int]] = []
        calibration: dict[str, Any] = {}
        width = 0
        for a, b in chunks:
            lc, circuit, cal = self.compiled(b - a, steps, mode, memory_angles is not None)
            width = max(width, lc.num_qubits)
            mem = None if memory_angles is None else np.asarray(memory_angles)[..., a:b]
            pubs.append((circuit, bind_matrix(lc, circuit, zz[:, :, a:b], ang[..., a:b], mem), shots))
            if cal is not None:
                calibration[f"{a}:{b}"] = cal
        job = self._run(pubs, shots, seed, idempotency_key)
        submitted = SubmittedJob(
            backend=self.name,
            job_ids=[str(job.job_id())],
            neurons=n,
            steps=steps,
            batch=batch,
            shots=shots,
            chunks=chunks,
            layout=self.layout,
            qubits_per_circuit=width,
            calibration=calibration or None,
        )
        self._jobs[submitted.local_key] = job
        return submitted

    def poll(self, job: SubmittedJob) -> JobState:
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
