"""Shared behaviour of all backends: input checking, ``run_layer`` = ``submit`` + ``fetch``, estimates."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.base import (
    Availability,
    BackendRefused,
    Capabilities,
    LayerEstimate,
    LayerResult,
    ProviderState,
    QueueInfo,
    SubmittedJob,
)
from backends.compiler import LayerCircuit, Layout, angles_array, chunk_bounds, compile_layer
from sqsnn.neuron import MemoryMode


def derive_seed(seed: int | None, *keys: int) -> int | None:
    """An independent-looking 31-bit seed for sub-run ``keys`` of a run seeded ``seed`` (None stays None).

    Aer seeds shot i of a run with ``seed + i``, so runs seeded s and s + 1 share shots; derived seeds are
    spread over 2**31 by a SeedSequence hash instead."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0] >> 1)


def check_inputs(z: Any, angles: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: z -> (T, B, n) float64; angles -> (3, n) or (3, B, n) float64."""
    detach = getattr(z, "detach", None)
    zz = np.asarray(detach().cpu().numpy() if detach is not None else z, dtype=np.float64)
    if zz.ndim != 3:
        raise ValueError(f"z must be (T, B, n) input currents, got shape {zz.shape}")
    ang = angles_array(angles, zz.shape[2])
    if ang.ndim == 3 and ang.shape[1] != zz.shape[1]:
        raise ValueError(f"per-sample angles must be (3, B={zz.shape[1]}, n), got {ang.shape}")
    return zz, ang


@dataclass(frozen=True)
class LayerRequest:
    """A checked submission: currents ``z`` (T, B, n) and ``angles`` (3, n) or (3, B, n) (radians) as float64,
    ``shots`` per sample, and the other ``submit`` arguments as given."""

    z: np.ndarray
    angles: np.ndarray
    shots: int
    mode: MemoryMode
    seed: int | None
    idempotency_key: str | None
    memory_angles: np.ndarray | None
    session_id: str | None = None

    @property
    def steps(self) -> int:
        return int(self.z.shape[0])

    @property
    def batch(self) -> int:
        return int(self.z.shape[1])

    @property
    def neurons(self) -> int:
        return int(self.z.shape[2])


class BaseBackend:
    """Common part of every backend; subclasses implement the provider-specific methods."""

    name: str
    layout: Layout = "mid-circuit"  # "deferred": T fresh I/O qubits per neuron, measured at the end

    def capabilities(self) -> Capabilities:
        raise NotImplementedError

    def availability(self) -> Availability:
        raise NotImplementedError

    def poll(self, job: SubmittedJob) -> ProviderState:
        raise NotImplementedError

    def fetch(self, job: SubmittedJob) -> LayerResult:
        raise NotImplementedError

    def cancel(self, job: SubmittedJob) -> None:
        """Cancel the provider jobs of ``job``; in-process backends have nothing running to cancel."""

    def queue_info(self, job: SubmittedJob) -> QueueInfo | None:
        """Queue position of ``job`` at the provider; None where there is no queue."""
        return None

    def close_session(self, session_id: str) -> None:
        """End the provider session ``session_id``; backends without sessions have nothing to close."""

    # --- shared ---------------------------------------------------------------------------------------
    def neurons_per_circuit(self) -> int:
        """Neurons packed into one circuit (chunk size)."""
        raise NotImplementedError

    def qubits_per_neuron(self, steps: int) -> int:
        return 2 if self.layout == "mid-circuit" else steps + 1

    def tasks_per_chunk(self, batch: int) -> int:
        """PUBs/tasks per chunk: one PUB carries the whole batch on Qiskit backends."""
        return 1

    def jobs_for(self, pubs: int) -> int:
        return 1

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        return None, "no public per-shot price applies"

    def estimate(self, neurons: int, steps: int, batch: int, shots: int = 1) -> LayerEstimate:
        chunks = chunk_bounds(neurons, self.neurons_per_circuit())
        pubs = len(chunks) * self.tasks_per_chunk(batch)
        total_shots = len(chunks) * batch * shots
        cost, note = self.cost_usd(pubs, total_shots)
        return LayerEstimate(
            backend=self.name,
            neurons=neurons,
            steps=steps,
            batch=batch,
            shots_per_sample=shots,
            qubits_per_circuit=self.qubits_per_neuron(steps) * min(neurons, self.neurons_per_circuit()),
            circuits=len(chunks),
            pubs=pubs,
            jobs=self.jobs_for(pubs),
            shots=total_shots,
            cost_usd=cost,
            price_note=note,
        )

    def check_request(self, neurons: int, steps: int, shots: int, mode: str) -> None:
        """Refuse, naming the failed capability or limit, before anything is submitted."""
        caps = self.capabilities()
        if mode not in caps.modes:
            raise BackendRefused(f"{self.name}: memory mode {mode!r} is not supported (supported: {caps.modes})")
        if self.layout == "mid-circuit" and not (
            caps.mid_circuit_measurement and caps.reset and caps.readable_mid_circuit
        ):
            raise BackendRefused(
                f"{self.name}: device lacks readable mid-circuit measurement and reset, which the "
                "mid-circuit layout needs; use the deferred layout"
            )
        if shots < caps.min_shots:
            raise BackendRefused(f"{self.name}: shots per task {shots} is below the device minimum {caps.min_shots}")
        if caps.max_shots is not None and shots > caps.max_shots:
            raise BackendRefused(f"{self.name}: shots per task {shots} exceeds the device maximum {caps.max_shots}")
        width = self.qubits_per_neuron(steps) * min(neurons, self.neurons_per_circuit())
        if caps.max_qubits is not None and width > caps.max_qubits:
            raise BackendRefused(
                f"{self.name}: qubit count {width} per circuit exceeds the device's {caps.max_qubits}; "
                "lower neurons_per_circuit"
            )

    def submit(
        self,
        z: Any,
        angles: Any,
        *,
        shots: int = 1,
        mode: MemoryMode = "quantum",
        seed: int | None = None,
        idempotency_key: str | None = None,
        memory_angles: np.ndarray | None = None,
        session_id: str | None = None,
    ) -> SubmittedJob:
        """Check the inputs (:func:`check_inputs`) and the request (:meth:`check_request`), then submit."""
        zz, ang = check_inputs(z, angles)
        request = LayerRequest(zz, ang, shots, mode, seed, idempotency_key, memory_angles, session_id)
        self.check_request(request.neurons, request.steps, shots, mode)
        return self._submit(request)

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        """Start running a checked request on the provider."""
        raise NotImplementedError

    def _submitted(
        self,
        request: LayerRequest,
        *,
        job_ids: list[str],
        chunks: list[tuple[int, int]],
        layout: str,
        qubits_per_circuit: int,
        calibration: dict[str, Any] | None = None,
    ) -> SubmittedJob:
        """The record of ``request`` submitted as ``job_ids`` (neurons, steps, batch, shots from the request)."""
        return SubmittedJob(
            backend=self.name,
            job_ids=job_ids,
            neurons=request.neurons,
            steps=request.steps,
            batch=request.batch,
            shots=request.shots,
            chunks=chunks,
            layout=layout,
            qubits_per_circuit=qubits_per_circuit,
            calibration=calibration,
            session_id=request.session_id,
        )

    def layer_circuit(self, n: int, steps: int, mode: MemoryMode, prepare_memory: bool) -> LayerCircuit:
        """The circuit of ``n`` neurons over ``steps`` steps in this backend's layout (mode 'official' has none)."""
        if mode == "official":
            raise BackendRefused(f"{self.name}: mode 'official' is a classical neuron and has no circuit")
        return compile_layer(n, steps, layout=self.layout, memory=mode, prepare_memory=prepare_memory)

    def run_layer(
        self,
        z: Any,
        angles: Any,
        *,
        shots: int = 1,
        mode: MemoryMode = "quantum",
        seed: int | None = None,
        memory_angles: np.ndarray | None = None,
    ) -> LayerResult:
        """Run one layer and wait for the result (submit + fetch); ``wall_s`` covers both."""
        start = time.perf_counter()
        job = self.submit(z, angles, shots=shots, mode=mode, seed=seed, memory_angles=memory_angles)
        result = self.fetch(job)
        result.wall_s = time.perf_counter() - start
        return result
