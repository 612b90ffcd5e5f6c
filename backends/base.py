"""The one backend interface, its result types, job states and errors.

Every backend (``exact``, ``aer``, ``aer-noisy:<fake>``, ``ibm:<backend>``, ``ibm-local:<fake>``,
``braket-local:sv|dm``, ``braket:<arn>``) implements :class:`Backend`. Execution is split into
``submit`` (returns a :class:`SubmittedJob` holding provider job ids and everything needed to decode) and
``poll`` / ``fetch``, so a caller never has to block on a QPU queue; ``run_layer`` is submit + fetch.
``submit(..., idempotency_key=k)`` de-duplicates: re-submitting the same batch with the same key returns
the job already submitted (IBM job tags, Braket ``clientToken``) instead of running it twice.
``submit(..., session_id=s)`` joins the provider session ``s`` (IBM ``Session``/``Batch``) that an earlier
layer of the same job opened (its id is in ``SubmittedJob.session_id``); ``close_session`` ends it.
``cancel`` cancels the provider jobs of a submission; ``queue_info`` reports its queue position.
Provider failures are raised as :class:`ProviderError` (retryable or final), with redacted messages.

Shapes: currents ``z`` are ``(T, B, n)``; angles ``(3, n)`` (rows ent, mem, in; radians), or
``(3, B, n)`` for one set per sample (parameter-shifted variants). ``LayerResult.spikes`` is
``(T, B, S, n)`` float64 0/1 for S shots per sample. ``memory_angles`` ``(B, n)`` (radians) starts each
neuron's memory in ``RX(alpha)|0>`` instead of ``|0>`` (see :mod:`backends.compiler`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from sqsnn.neuron import MemoryMode

ProviderState = Literal["queued", "running", "done", "failed", "cancelled"]
"""A provider job's (IBM job, Braket task) state as sqsnn reads it; ``done`` where a job's own state
(:data:`workers.models.JobState`) says ``succeeded``."""
Fallback = Literal["none", "aer", "exact"]
"""Where a job runs when its backend is unavailable: ``none`` fails it, ``aer`` / ``exact`` run there instead
(the result records the backend used)."""

# One explicit mapping from every provider's job/task state (IBM Runtime strings, the qiskit JobStatus
# enum names of local mode, Braket task states) to ours.
PROVIDER_STATES: dict[str, ProviderState] = {
    "INITIALIZING": "queued",
    "QUEUED": "queued",
    "VALIDATING": "queued",
    "CREATED": "queued",
    "RUNNING": "running",
    "CANCELLING": "running",
    "DONE": "done",
    "COMPLETED": "done",
    "ERROR": "failed",
    "FAILED": "failed",
    "CANCELLED": "cancelled",
}


def normalise_state(raw: object) -> ProviderState:
    """Map a provider state (string or enum with ``.name``) to :data:`ProviderState`."""
    key = str(getattr(raw, "name", raw)).upper()
    try:
        return PROVIDER_STATES[key]
    except KeyError:
        raise ValueError(f"unknown provider job state {raw!r}") from None


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be reached now (no credentials, offline, quota)."""


class BackendRefused(ValueError):
    """The backend cannot run this layer as requested; the message names the failed capability/limit."""


class BudgetExceeded(ValueError):
    """The estimate of a job exceeds its budget; the message names the limit."""


class ProviderError(RuntimeError):
    """A provider call failed. ``retryable``: transient (throttling, 5xx, dropped connection, result not yet
    stored) and worth retrying with backoff; otherwise final (bad credentials, task FAILED, device retired).
    The message is already redacted (:func:`backends.redact.redact`): no secrets, no account ids."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class QueueInfo:
    """Where a submission stands in the provider's queue: ``position`` (0 = next; None when the provider
    does not say), ``estimated_start`` (ISO 8601 UTC, None when unknown), and the provider's message."""

    position: int | None
    estimated_start: str | None = None
    message: str = ""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. ``readable_mid_circuit``: mid-circuit results are returned (else the
    deferred layout is used); ``min_shots``/``max_shots``: per task/PUB; ``max_qubits``: device width."""

    provider: str
    mid_circuit_measurement: bool
    reset: bool
    readable_mid_circuit: bool
    hardware: bool
    noisy: bool
    parameter_batches: bool
    modes: tuple[str, ...]
    max_qubits: int | None = None
    min_shots: int = 1
    max_shots: int | None = None


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str


@dataclass(frozen=True)
class LayerEstimate:
    """Resources of running one layer: ``circuits`` distinct circuits, ``pubs`` PUBs/tasks, ``jobs``
    provider jobs, ``shots`` total shots over all PUBs/tasks, ``cost_usd`` where a public price applies."""

    backend: str
    neurons: int
    steps: int
    batch: int
    shots_per_sample: int
    qubits_per_circuit: int
    circuits: int
    pubs: int
    jobs: int
    shots: int
    cost_usd: float | None = None
    price_note: str = ""


@dataclass(frozen=True)
class FallbackRecord:
    """A fallback that happened: what was requested, what ran instead and why."""

    requested: str
    used: str
    reason: str


@dataclass
class SubmittedJob:
    """A submission: provider job ids plus what is needed to decode the result later."""

    backend: str
    job_ids: list[str]
    neurons: int
    steps: int
    batch: int
    shots: int
    chunks: list[tuple[int, int]]
    layout: str
    qubits_per_circuit: int
    calibration: dict[str, Any] | None = None
    submitted_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    local_key: str = field(default_factory=lambda: uuid.uuid4().hex)
    session_id: str | None = None  # provider session / batch the jobs ran in (IBM), None elsewhere

    @property
    def qubits_used(self) -> int:
        """Qubits holding neurons, summed over the chunks' circuits (0 when no circuit ran)."""
        per_neuron = {"mid-circuit": 2, "deferred": self.steps + 1}.get(self.layout, 0)
        return per_neuron * self.neurons


@dataclass
class LayerResult:
    """Spikes ``(T, B, S, n)`` of one layer and the record of how they were produced."""

    spikes: np.ndarray
    backend: str
    job_ids: list[str]
    circuits: int
    jobs: int
    shots: int
    qubits_per_circuit: int
    wall_s: float = 0.0
    calibration: dict[str, Any] | None = None
    fallback: FallbackRecord | None = None
    usage: dict[str, Any] | None = None  # provider usage / metrics documents as reported (redacted)
    qubits_used: int = 0  # qubits holding neurons, summed over circuits
    qpu_seconds: float | None = None  # billed QPU time in seconds (IBM), None where the provider bills otherwise

    @property
    def single_shot(self) -> np.ndarray:
        """Spikes ``(T, B, n)`` of the first shot of every sample."""
        return self.spikes[:, :, 0, :]


@runtime_checkable
class Backend(Protocol):
    """The one interface every backend implements."""

    name: str

    def capabilities(self) -> Capabilities: ...

    def availability(self) -> Availability: ...

    def estimate(self, neurons: int, steps: int, batch: int, shots: int = 1) -> LayerEstimate: ...

    def submit(
        self,
        z: np.ndarray,
        angles: np.ndarray,
        *,
        shots: int = 1,
        mode: MemoryMode = "quantum",
        seed: int | None = None,
        idempotency_key: str | None = None,
        memory_angles: np.ndarray | None = None,
        session_id: str | None = None,
    ) -> SubmittedJob: ...

    def poll(self, job: SubmittedJob) -> ProviderState: ...

    def fetch(self, job: SubmittedJob) -> LayerResult: ...

    def cancel(self, job: SubmittedJob) -> None: ...

    def queue_info(self, job: SubmittedJob) -> QueueInfo | None: ...

    def close_session(self, session_id: str) -> None: ...

    def run_layer(
        self,
        z: np.ndarray,
        angles: Any,
        *,
        shots: int = 1,
        mode: MemoryMode = "quantum",
        seed: int | None = None,
        memory_angles: np.ndarray | None = None,
    ) -> LayerResult: ...
