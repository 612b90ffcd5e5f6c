"""``ibm:<backend>`` (IBM Quantum via qiskit-ibm-runtime) and ``ibm-local:<fake>`` (its local testing mode).

Both share one client path: ISA transpile with the preset pass manager and a layout chosen from
calibration error rates, the executor ``Sampler`` with one PUB per chunk, job tags for de-duplication,
job states normalised by :func:`backends.base.normalise_state`. Only the backend object differs.

Real IBM (``ibm:``): the service is ``QiskitRuntimeService()`` with the SDK's own credentials (environment
variables ``QISKIT_IBM_TOKEN`` / ``QISKIT_IBM_INSTANCE`` / ``QISKIT_IBM_CHANNEL`` or the saved account;
never logged). ``SQSNN_IBM_API_URL``, when set, is the Runtime API base URL used verbatim (through the
client's ``url_resolver``), e.g. a private endpoint or the test twin; IAM and Global Search follow the
SDK's ``IAM_URL`` / ``GLOBAL_SEARCH_URL`` / ``GLOBAL_CATALOG_URL``. One execution mode per sqsnn job
(``IBMOptions.execution_mode``: a ``Session`` by default, or a ``Batch``): the first ``submit`` opens it
and its id is recorded in ``SubmittedJob.session_id``; later layers pass that id and join it;
``close_session`` closes it. Usage is the job's metrics document; ``LayerResult.qpu_seconds`` its billed
QPU seconds. Every client failure becomes a :class:`ProviderError` (retryable: throttling, 5xx, dropped
connections; final otherwise) or :class:`BackendUnavailable`, with redacted messages.

Locally (``ibm-local:``) an Aer simulator is built from the fake device (its noise model, or no noise
with ``IBMOptions(noise=False)``), on which local mode runs the same client code. The ISA circuits are
moved onto the physical qubits they use before simulation (156-qubit noisy simulation costs tens of
seconds per run); the noise model is that of those qubits.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
from qiskit import QuantumCircuit
from qiskit_aer import AerSimulator

from backends.aer import compact_pubs, fake_backend, isa_transpile, noise_model
from backends.base import (
    Availability,
    BackendUnavailable,
    Capabilities,
    LayerResult,
    ProviderError,
    ProviderState,
    QueueInfo,
    SubmittedJob,
    normalise_state,
)
from backends.common import LayerRequest
from backends.compiler import LayerCircuit
from backends.options import IBMOptions
from backends.qiskit_backend import Pub, QiskitBackend
from backends.redact import redact

API_URL_ENV = "SQSNN_IBM_API_URL"
CLIENT_LOGGERS = ("qiskit_ibm_runtime", "ibm-cloud-sdk-core", "ibm_platform_services")
CREDENTIALS_HINT = "set QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE or save an account"
STATUS_HINTS = {
    401: f"; credentials rejected: {CREDENTIALS_HINT}",
    403: "; not permitted for this instance or plan",
    409: "; refused in the current state (usage limit reached, job already final, session closed)",
}
DEAD: tuple[ProviderState, ...] = ("failed", "cancelled")  # states in which a tagged job does not count as submitted
T = TypeVar("T")


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


class RedactingFilter(logging.Filter):
    """Passes a record through :func:`redact` (the IBM clients' DEBUG wire log prints request headers and
    bodies, which name the instance CRN)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def guard_client_logs() -> None:
    """Attach :class:`RedactingFilter` to every logger of qiskit-ibm-runtime and ibm-cloud-sdk-core (logger
    filters do not reach child loggers, so each existing one gets it)."""
    names = [n for n in logging.Logger.manager.loggerDict if n.startswith(CLIENT_LOGGERS)]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def runtime_service() -> Any:
    """``QiskitRuntimeService`` with the SDK's credentials; the API base URL from ``SQSNN_IBM_API_URL`` if set."""
    from qiskit_ibm_runtime import QiskitRuntimeService

    guard_client_logs()
    url = os.environ.get(API_URL_ENV)
    if not url:
        return QiskitRuntimeService()
    return QiskitRuntimeService(url_resolver=lambda _url, _instance, _private, _channel: url)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def http_status(exc: BaseException) -> int | None:
    """HTTP status of the request behind ``exc`` (Runtime API, or IAM / Global Search; -1: no response)."""
    from ibm_cloud_sdk_core import ApiException
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    for seen in _chain(exc):
        if isinstance(seen, IBMNotAuthorizedError):
            return 401
        if isinstance(seen, RequestsApiError):
            return seen.status_code
        if isinstance(seen, ApiException):
            return int(seen.status_code)
    return None


def is_retryable(exc: BaseException) -> bool:
    """Transient: throttled (429), server errors (5xx), or no response at all (dropped connection, timeout,
    retries exhausted, which the Runtime client reports with status -1)."""
    import requests

    status = http_status(exc)
    if status is not None:
        return status == -1 or status == 429 or status >= 500
    return any(isinstance(seen, requests.RequestException | ConnectionError | TimeoutError) for seen in _chain(exc))


def provider_error(backend: str, doing: str, exc: BaseException) -> ProviderError:
    """``exc`` (raised by the client while ``doing``) as a redacted, classified :class:`ProviderError`."""
    retryable = is_retryable(exc)
    kind = "transient, retry later" if retryable else "final"
    hint = STATUS_HINTS.get(http_status(exc) or 0, "")
    return ProviderError(
        f"{backend}: {doing} failed ({kind}{hint}): {type(exc).__name__}: {redact(str(exc))}", retryable=retryable
    )


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
        self._modes: dict[str, Any] = {}  # open Session / Batch objects by id

    def _call(self, doing: str, fn: Callable[[], T]) -> T:
        """``fn()`` with every client exception turned into a :class:`ProviderError`."""
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            raise provider_error(self.name, doing, exc) from None

    def device(self) -> Any:
        """The Qiskit backend (fake snapshot or real). Raises :class:`BackendUnavailable` when there are no
        valid credentials or the backend is not offered, ProviderError(retryable) on transient failures."""
        if self._device is None:
            if self.local:
                self._device = fake_backend(self.device_name)
            else:
                self._device = self._connect()
        return self._device

    def _connect(self) -> Any:
        from qiskit.providers.exceptions import QiskitBackendNotFoundError

        try:
            self._service = runtime_service()
            return self._service.backend(self.device_name)
        except QiskitBackendNotFoundError:
            raise BackendUnavailable(
                f"{self.name}: backend {self.device_name!r} is not offered by this IBM Quantum instance "
                "(retired, renamed or not in your plan)"
            ) from None
        except Exception as exc:  # offline construction fails with an opaque AttributeError
            if is_retryable(exc):
                raise provider_error(self.name, "connecting to IBM Quantum", exc) from None
            cause = f"{type(exc).__name__}: {redact(str(exc))}"
            raise BackendUnavailable(
                f"{self.name}: IBM Quantum is not reachable ({cause}); {CREDENTIALS_HINT}"
            ) from None

    def availability(self) -> Availability:
        try:
            device = self.device()
            if self.local:
                return Availability(True, "local testing mode")
            status = self._call("reading the backend status", device.status)
        except (BackendUnavailable, ProviderError) as exc:
            return Availability(False, str(exc))
        if not status.operational:
            return Availability(False, f"{self.name}: backend not operational ({status.status_msg})")
        return Availability(True, f"operational ({status.status_msg}), {status.pending_jobs} pending jobs")

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

    def _tagged(self, tag: str) -> list[Any]:
        """Jobs submitted with ``tag`` that have not failed or been cancelled, oldest first."""
        jobs = self._call(
            "listing jobs by tag",
            lambda: self._service.jobs(job_tags=[tag], limit=10, backend_name=self.device_name, descending=False),
        )
        return [j for j in jobs if normalise_state(self._call("reading a job status", j.status)) not in DEAD]

    def _existing(self, tag: str) -> Any:
        """The job already submitted with ``tag`` (de-duplication), or None."""
        if self.local:
            return self._by_tag.get(tag)
        live = self._tagged(tag)
        return live[0] if live else None

    def _deduplicated(self, tag: str, job: Any) -> Any:
        """The oldest live job with ``tag``; later ones (``job`` included) are cancelled. The client retries a
        POST that got a 5xx, so a job the server created before failing can exist twice; every process that
        submits the same tag keeps the same one."""
        live = self._tagged(tag)
        if not live:  # the listing does not show the new job yet
            return job
        keep = live[0]
        extra = {j.job_id(): j for j in [*live[1:], job] if j.job_id() != keep.job_id()}
        for duplicate in extra.values():
            self._cancel(duplicate)
        return keep

    def _mode_class(self) -> Any:
        from qiskit_ibm_runtime import Batch, Session

        return Session if self.options.execution_mode == "session" else Batch

    def _mode(self, session_id: str | None, target: Any) -> Any:
        """The Session/Batch to submit in: ``session_id``'s (joined), or a new one."""
        if session_id is None:
            mode = self._call(
                f"opening a {self.options.execution_mode}",
                lambda: self._mode_class()(backend=target, max_time=self.options.max_time),
            )
            if mode.session_id is not None:
                self._modes[mode.session_id] = mode
            return mode
        if session_id not in self._modes:
            self._modes[session_id] = self._call(
                f"joining {self.options.execution_mode} {session_id}",
                lambda: self._mode_class().from_id(session_id, self._service),
            )
        return self._modes[session_id]

    def _run(self, pubs: list[Pub], request: LayerRequest) -> Any:
        from qiskit_ibm_runtime.executor_sampler import Sampler

        guard_client_logs()  # the loggers of modules imported just now
        device = self.device()
        key = request.idempotency_key
        tag = batch_tag(pubs, f"{self.name}/{key}") if key else None
        if tag is not None and (existing := self._existing(tag)) is not None:
            return existing
        target = device
        if self.local:  # local testing mode simulates the ISA circuits on the qubits they use
            pubs, used = compact_pubs(pubs)
            target = local_simulator(self.device_name, used if self.options.noise else None)
        mode = self._mode(None if self.local else request.session_id, target)
        sampler = Sampler(mode=mode)
        sampler.options.environment.job_tags = [*([tag] if tag else []), *self.options.job_tags]
        if self.local and request.seed is not None:
            sampler.options.simulator.seed_simulator = request.seed
        job = self._call("submitting the job", lambda: sampler.run(pubs, shots=request.shots))
        if tag is not None and self.local:
            self._by_tag[tag] = job
        elif tag is not None:
            job = self._deduplicated(tag, job)
        return job

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        submitted = super()._submit(request)
        if not self.local:  # the session the job runs in (an existing job found by tag keeps its own)
            provider_job = self._jobs[submitted.local_key]
            submitted.session_id = self._call("reading the job's session", lambda: provider_job.session_id)
        return submitted

    def _job(self, job: SubmittedJob) -> Any:
        """The provider job: from this process, or (real IBM) retrieved by id after a restart."""
        if job.local_key in self._jobs or self.local:
            return super()._job(job)
        self.device()
        self._jobs[job.local_key] = self._call("retrieving the job", lambda: self._service.job(job.job_ids[0]))
        return self._jobs[job.local_key]

    def poll(self, job: SubmittedJob) -> ProviderState:
        provider_job = self._job(job)
        return normalise_state(self._call("reading the job status", provider_job.status))

    def fetch(self, job: SubmittedJob) -> LayerResult:
        provider_job = self._job(job)
        result = self._call("fetching the job result", lambda: QiskitBackend.fetch(self, job))
        if not self.local:
            metrics = self._call("reading the job metrics", provider_job.metrics)
            usage = metrics.get("usage") or {}
            result.usage = metrics
            if usage.get("status", "pending") != "pending" and usage.get("qpu_charge_time_seconds") is not None:
                result.qpu_seconds = float(usage["qpu_charge_time_seconds"])
        return result

    def cancel(self, job: SubmittedJob) -> None:
        """Cancel the provider job; harmless when it already ended (the API answers 409)."""
        if self.local:
            return
        self._cancel(self._job(job))

    def _cancel(self, provider_job: Any) -> None:
        from qiskit_ibm_runtime.exceptions import RuntimeInvalidStateError

        try:
            provider_job.cancel()
        except RuntimeInvalidStateError:
            return  # already final
        except Exception as exc:
            raise provider_error(self.name, "cancelling the job", exc) from None

    def queue_info(self, job: SubmittedJob) -> QueueInfo | None:
        """Queue position and estimated start from the job's metrics; None when IBM reports neither."""
        if self.local:
            return None
        metrics = self._call("reading the job metrics", self._job(job).metrics)
        position, start = metrics.get("position_in_queue"), metrics.get("estimated_start_time")
        if position is None and start is None:
            return None
        where = f"position {position}" if position is not None else "position unknown"
        return QueueInfo(None if position is None else int(position), start, f"{where} in the {self.device_name} queue")

    def close_session(self, session_id: str) -> None:
        """Close the IBM Session/Batch: it accepts no more jobs; queued ones still run."""
        if self.local:
            return
        self.device()
        mode = self._mode(session_id, self._device)
        self._call(f"closing {self.options.execution_mode} {session_id}", mode.close)
        self._modes.pop(session_id, None)
