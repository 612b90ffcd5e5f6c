"""``braket-local:sv|dm`` (Braket LocalSimulator) and ``braket:<device ARN>`` (AwsDevice).

Each chunk of neurons is one parameterised OpenQASM 3 program in Braket built-in gate names
(:func:`backends.qasm.native_qasm`); each sample of the batch is one *executable* of it (the program with
that sample's ``inputs``). Executables are numbered chunk-major (``chunk * B + sample``) and grouped into as
few tasks as the device allows:

* where the device lists the ``braket.ir.openqasm.program_set`` action (gate-based QPUs, SV1/DM1, the local
  simulators), one task is a **program set** of consecutive executables, at most ``maximumExecutables`` of
  them and at most ``maximumTotalShots`` shots in all (both read from the device);
* elsewhere one task per executable, created in parallel (``max_parallel`` at a time).

Each task gets a deterministic ``clientToken`` derived from the submission's ``idempotency_key`` and its
index, so re-submitting with the same key returns the tasks already created (Braket de-duplicates on the
token) instead of creating new ones. With ``reservation_arn`` (``braket:`` devices only) every task carries
the Braket Direct reservation as its ``RESERVATION_TIME_WINDOW_ARN`` association, as the SDK's
``AwsDevice.run`` / ``run_batch`` do with their ``reservation_arn`` argument. Multi-shot rows come back
grouped by measurement branch and are shuffled. The local simulators run mid-circuit measurement and reset
(slowly: keep 1-4 neurons per program). No Braket QPU returns mid-circuit results, so QPUs use the deferred
layout by default (T fresh I/O qubits per neuron) and a forced mid-circuit layout is refused unless the
device lists ``reset``.
Device limits (OpenQASM action, gate set, qubit count, shots range, program-set limits, status, execution
windows) are read from the device properties and checked before anything is submitted. Task ARNs (which
hold the AWS account id) stay in :class:`SubmittedJob` for sqsnn's own calls; results and messages carry
them redacted. Device documents are read by :mod:`backends.braket_device`; provider failures are mapped by
:mod:`backends.braket_errors`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from backends.base import (
    Availability,
    BackendRefused,
    BackendUnavailable,
    Capabilities,
    LayerEstimate,
    LayerResult,
    ProviderError,
    ProviderState,
    QueueInfo,
    SubmittedJob,
    normalise_state,
)
from backends.braket_device import (
    DOCUMENTED_PROGRAM_SET_LIMITS,
    ProgramSetLimits,
    device_capabilities,
    in_execution_window,
    program_set_limits,
    queue_position,
)
from backends.braket_errors import provider_call
from backends.braket_sdk import import_braket_sdk
from backends.common import BaseBackend, LayerRequest
from backends.compiler import LayerCircuit, chunk_bounds, decode_spikes
from backends.options import BraketDeviceOptions, BraketOptions
from backends.prices import braket_prices
from backends.qasm import native_qasm, program_inputs
from backends.redact import redact
from sqsnn.neuron import MemoryMode

LOCAL_DEVICES = {"sv": "braket_sv", "dm": "braket_dm"}
_T = TypeVar("_T")
log = logging.getLogger(__name__)


def task_groups(executables: int, per_task: int) -> list[range]:
    """Consecutive executable indices of each task, ``per_task`` at most per task."""
    return [range(start, min(start + per_task, executables)) for start in range(0, executables, per_task)]


def client_token(key: str, index: int) -> str:
    """The ``clientToken`` of task ``index`` of the submission keyed ``key`` (64 hex characters)."""
    return hashlib.sha256(f"sqsnn/{key}/{index}".encode()).hexdigest()


class BraketBackend(BaseBackend):
    """Braket local simulator (``target`` = ``sv`` / ``dm``) or device (``target`` = ARN)."""

    def __init__(self, target: str, *, local: bool, options: BraketOptions | None = None, device: Any = None) -> None:
        """``device``: an already constructed ``AwsDevice``-like object (properties, status, aws_session)."""
        self.options = options or BraketOptions()
        self.local = local
        self.target = target
        if local and target not in LOCAL_DEVICES:
            raise ValueError(f"braket-local target must be 'sv' or 'dm', got {target!r}")
        if local and isinstance(self.options, BraketDeviceOptions) and self.options.reservation_arn:
            raise ValueError("reservation_arn applies to braket:<device ARN> only, not to the local simulators")
        self.name = f"braket-local:{target}" if local else f"braket:{target}"
        if self.options.layout == "auto":
            self.layout = "mid-circuit" if local else "deferred"
        else:
            self.layout = self.options.layout
        self._device: Any = device
        self._programs: dict[tuple[int, int, str, bool], tuple[LayerCircuit, str]] = {}
        self._local_results: dict[str, list[np.ndarray]] = {}

    # --- device ----------------------------------------------------------------------------------------
    def device(self) -> Any:
        if self._device is None:
            import_braket_sdk()
            if self.local:
                from braket.devices import LocalSimulator

                self._device = LocalSimulator(LOCAL_DEVICES[self.target])
            else:
                from braket.aws import AwsDevice

                with provider_call("GetDevice"):
                    self._device = AwsDevice(self.target)
        return self._device

    def _properties(self) -> dict[str, Any]:
        props = self.device().properties
        return json.loads(props.json()) if hasattr(props, "json") else dict(props)

    def neurons_per_circuit(self) -> int:
        return self.options.neurons_per_circuit

    def capabilities(self) -> Capabilities:
        return device_capabilities(self._properties(), hardware=not self.local)

    def availability(self) -> Availability:
        try:
            device = self.device()
            if self.local:
                return Availability(True, "local simulator")
            if hasattr(device, "refresh_metadata"):
                with provider_call("GetDevice"):
                    device.refresh_metadata()
        except (BackendUnavailable, ProviderError) as exc:
            return Availability(False, str(exc))
        status = str(device.status)
        if status != "ONLINE":
            return Availability(False, f"{self.name}: device status {status}")
        windows = self._properties()["service"].get("executionWindows", [])
        if not in_execution_window(windows, datetime.now(UTC)):
            return Availability(True, "online; outside its execution windows: tasks wait in the queue")
        return Availability(True, "online")

    # --- estimate --------------------------------------------------------------------------------------
    def _limits_for_estimate(self) -> tuple[ProgramSetLimits | None, str]:
        try:
            return program_set_limits(self._properties()), ""
        except (BackendUnavailable, ProviderError):
            limits = DOCUMENTED_PROGRAM_SET_LIMITS
            return limits, (
                f"; device limits not readable now, assumed program sets of <= {limits.max_executables} "
                f"executables and <= {limits.max_total_shots} shots"
            )

    def estimate(self, neurons: int, steps: int, batch: int, shots: int = 1) -> LayerEstimate:
        """Tasks = executables (chunks x samples) grouped by the device's program-set limits (one task per
        executable without program sets); cost = tasks x per-task fee + all shots x per-shot fee."""
        base = super().estimate(neurons, steps, batch, shots)
        limits, assumed = self._limits_for_estimate()
        per_task = 1 if limits is None else limits.executables_per_task(shots)
        tasks = len(task_groups(base.circuits * batch, per_task))
        cost, note = self.cost_usd(tasks, base.shots)
        return replace(base, pubs=tasks, jobs=tasks, cost_usd=cost, price_note=note + assumed)

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        if self.local:
            return 0.0, "local simulator"
        prices = braket_prices()
        per_shot = prices.per_shot.get(self.target)
        if per_shot is None:
            return None, f"no price recorded for {self.target} ({prices.source})"
        cost = tasks * prices.per_task + shots * per_shot
        return cost, (
            f"Braket on-demand prices as of {prices.as_of}: ${prices.per_task}/task + ${per_shot}/shot; a program "
            "set is billed as one task (one per-task fee, the per-shot fee for every shot of every executable)"
        )

    # --- submission ------------------------------------------------------------------------------------
    def _program(self, n: int, steps: int, mode: MemoryMode, prepare: bool) -> tuple[LayerCircuit, str]:
        key = (n, steps, mode, prepare)
        if key not in self._programs:
            lc = self.layer_circuit(n, steps, mode, prepare)
            self._programs[key] = (lc, native_qasm(lc))
        return self._programs[key]

    def _executables(self, request: LayerRequest, chunks: list[tuple[int, int]]) -> list[tuple[str, dict[str, float]]]:
        """(program source, inputs) of every executable, chunk-major (``chunk * B + sample``)."""
        out: list[tuple[str, dict[str, float]]] = []
        for a, b in chunks:
            lc, source = self._program(b - a, request.steps, request.mode, request.memory_angles is not None)
            mem = None if request.memory_angles is None else np.asarray(request.memory_angles)[..., a:b]
            out += [
                (source, values) for values in program_inputs(lc, request.z[:, :, a:b], request.angles[..., a:b], mem)
            ]
        return out

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        import_braket_sdk()
        from braket.ir.openqasm import Program
        from braket.program_sets import ProgramSet

        chunks = chunk_bounds(request.neurons, self.options.neurons_per_circuit)
        limits = program_set_limits(self._properties())
        job = self._submitted(
            request,
            job_ids=[],
            chunks=chunks,
            layout=self.layout,
            qubits_per_circuit=self.qubits_per_neuron(request.steps) * min(request.neurons, self.neurons_per_circuit()),
            calibration=None if self.local else self._calibration(),
        )
        executables = self._executables(request, chunks)
        per_task = 1 if limits is None else limits.executables_per_task(request.shots)
        specs: list[Any] = []
        for group in task_groups(len(executables), per_task):
            if limits is None:
                source, values = executables[group.start]
                specs.append(Program(source=source, inputs=values))
            else:
                specs.append(ProgramSet(_program_entries([executables[i] for i in group]), request.shots))
        if limits is not None and min(s.total_shots for s in specs) < limits.min_total_shots:
            raise BackendRefused(
                f"{self.name}: a program set of {min(s.total_shots for s in specs)} shots is below the device "
                f"minimum of {limits.min_total_shots} total shots; raise shots per sample"
            )
        if self.local:
            self._run_local(job, specs, request.shots)
        else:
            job.job_ids = self._create_tasks(specs, request, job.local_key)
            log.info("%s: %d Braket tasks for %d executables", self.name, len(specs), len(executables))
        return job

    def _run_local(self, job: SubmittedJob, specs: list[Any], shots: int) -> None:
        measurements: list[np.ndarray] = []
        for spec in specs:
            result = self.device().run(spec, shots=getattr(spec, "total_shots", shots)).result()
            job.job_ids.append(str(result.task_metadata.id))
            measurements += _executable_measurements(result)
        self._local_results[job.local_key] = measurements

    def _create_tasks(self, specs: list[Any], request: LayerRequest, local_key: str) -> list[str]:
        """Create one task per spec in parallel; on failure cancel those created (unless an idempotency key
        lets a retry adopt them) and raise the mapped error."""
        session = self.device().aws_session
        key = request.idempotency_key or local_key
        with provider_call("CreateQuantumTask"):
            bucket = self.options.s3_bucket or session.default_bucket()
        arn = self.options.reservation_arn if isinstance(self.options, BraketDeviceOptions) else None
        reservation = {"associations": [{"arn": arn, "type": "RESERVATION_TIME_WINDOW_ARN"}]} if arn else {}

        def create(index: int) -> str:
            spec = specs[index]
            action = spec.to_ir().json() if hasattr(spec, "to_ir") else spec.json()
            with provider_call("CreateQuantumTask"):
                return str(
                    session.create_quantum_task(
                        deviceArn=self.target,
                        action=action,
                        shots=getattr(spec, "total_shots", request.shots),
                        outputS3Bucket=bucket,
                        outputS3KeyPrefix=f"{self.options.s3_prefix}/tasks",
                        clientToken=client_token(key, index),
                        tags={"sqsnn-submission": key},
                        **reservation,
                    )
                )

        arns: list[str | None] = [None] * len(specs)
        errors: list[Exception] = []

        def attempt(index: int) -> None:
            try:
                arns[index] = create(index)
            except Exception as exc:
                errors.append(exc)

        self._parallel(attempt, range(len(specs)))
        if errors:
            created = [arn for arn in arns if arn is not None]
            if request.idempotency_key is None and created:
                try:
                    self._cancel_arns(created)
                except (ProviderError, BackendUnavailable) as exc:  # the creation error is the one to report
                    log.warning(
                        "%s: could not cancel %d tasks of a failed submission: %s", self.name, len(created), exc
                    )
            raise errors[0]
        return [arn for arn in arns if arn is not None]

    def _parallel(self, fn: Callable[[Any], _T], items: Sequence[Any]) -> list[_T]:
        if len(items) <= 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.options.max_parallel, len(items))) as pool:
            return list(pool.map(fn, items))

    # --- following the tasks ---------------------------------------------------------------------------
    def _describe(self, arn: str) -> dict[str, Any]:
        with provider_call("GetQuantumTask"):
            return dict(self.device().aws_session.get_quantum_task(arn))

    def _states(self, job: SubmittedJob) -> list[dict[str, Any]]:
        return self._parallel(self._describe, job.job_ids)

    def poll(self, job: SubmittedJob) -> ProviderState:
        if self.local:
            return "done" if job.local_key in self._local_results else "failed"
        states = {normalise_state(task["status"]) for task in self._states(job)}
        order: tuple[ProviderState, ...] = ("failed", "cancelled", "running", "queued")
        return next((state for state in order if state in states), "done")

    def queue_info(self, job: SubmittedJob) -> QueueInfo | None:
        """Queue position of the submission's task nearest the front (None when no task waits)."""
        if self.local:
            return None
        waiting = [
            queue_position(task.get("queueInfo") or {})
            for task in self._states(job)
            if task["status"] in ("CREATED", "QUEUED")
        ]
        known = [info for info in waiting if info.position is not None]
        return min(known, key=lambda info: info.position or 0) if known else (waiting[0] if waiting else None)

    def cancel(self, job: SubmittedJob) -> None:
        """Cancel every task of the submission that has not ended (tasks already ended are left as they are)."""
        if not self.local:
            self._cancel_arns(job.job_ids)

    def _cancel_arns(self, arns: Sequence[str]) -> None:
        from botocore.exceptions import ClientError

        session = self.device().aws_session

        def cancel(arn: str) -> None:
            with provider_call("CancelQuantumTask"):
                try:
                    session.cancel_quantum_task(arn)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "ConflictException":  # already ended
                        raise

        self._parallel(cancel, arns)

    def _wait(self, job: SubmittedJob) -> None:
        """Block until every task ended (re-reading only those still pending); raise :class:`ProviderError`
        for a FAILED or CANCELLED task (final) or when ``poll_timeout_s`` passes first (retryable: the tasks
        keep running)."""
        deadline = time.monotonic() + self.options.poll_timeout_s
        pending = list(job.job_ids)
        while True:
            tasks = self._parallel(self._describe, pending)
            for task in tasks:
                arn = task["quantumTaskArn"]
                if task["status"] == "FAILED":
                    reason = task.get("failureReason") or "no reason given"
                    raise ProviderError(redact(f"{self.name}: task {arn} FAILED: {reason}"), retryable=False)
                if task["status"] == "CANCELLED":
                    raise ProviderError(redact(f"{self.name}: task {arn} was CANCELLED"), retryable=False)
            pending = [task["quantumTaskArn"] for task in tasks if task["status"] != "COMPLETED"]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"{self.name}: {len(pending)} of {len(job.job_ids)} tasks not finished after "
                    f"{self.options.poll_timeout_s} s",
                    retryable=True,
                )
            time.sleep(self.options.poll_interval_s)

    def _download(self, arn: str) -> list[np.ndarray]:
        import_braket_sdk()
        from braket.aws import AwsQuantumTask

        with provider_call("GetQuantumTask result"):
            task = AwsQuantumTask(arn, aws_session=self.device().aws_session, quiet=True)
            result = task.result()
        if result is None:
            raise ProviderError(redact(f"{self.name}: task {arn} ended without a result"), retryable=False)
        return _executable_measurements(result)

    def fetch(self, job: SubmittedJob) -> LayerResult:
        """Wait for the tasks, download their results and decode ``(T, B, S, n)`` spikes."""
        if self.local:
            measurements = self._local_results.pop(job.local_key)
        else:
            self._wait(job)
            measurements = [m for task in self._parallel(self._download, job.job_ids) for m in task]
        expected = len(job.chunks) * job.batch
        if len(measurements) != expected:
            raise ProviderError(
                f"{self.name}: {len(measurements)} executable results, {expected} expected", retryable=False
            )
        rng = np.random.default_rng(int(hashlib.sha256(job.local_key.encode()).hexdigest()[:8], 16))
        parts = []
        for c, (a, b) in enumerate(job.chunks):
            meas = np.stack(measurements[c * job.batch : (c + 1) * job.batch])  # (B, S, bits)
            shuffled = meas[:, rng.permutation(meas.shape[1]), :]  # rows come grouped by branch
            parts.append(decode_spikes(shuffled, b - a, job.steps))
        return LayerResult(
            spikes=np.concatenate(parts, axis=-1),
            backend=self.name,
            job_ids=[redact(arn) for arn in job.job_ids],
            circuits=len(job.chunks),
            jobs=len(job.job_ids),
            shots=job.batch * job.shots * len(job.chunks),
            qubits_per_circuit=job.qubits_per_circuit,
            qubits_used=job.qubits_used,
            calibration=job.calibration,
            usage={"tasks": len(job.job_ids), "executables": expected, "shots": expected * job.shots},
        )

    def _calibration(self) -> dict[str, Any]:
        props = self._properties()
        return {
            "backend": self.target,
            "calibrated_at": props.get("service", {}).get("updatedAt"),
            "standardized": props.get("standardized"),
        }


def _program_entries(executables: Sequence[tuple[str, dict[str, float]]]) -> list[Any]:
    """Consecutive executables of the same source merged into one ``Program`` with list-valued inputs."""
    from braket.ir.openqasm import Program

    entries: list[Any] = []
    runs: list[tuple[str, list[dict[str, float]]]] = []
    for source, values in executables:
        if runs and runs[-1][0] == source:
            runs[-1][1].append(values)
        else:
            runs.append((source, [values]))
    for source, rows in runs:
        entries.append(Program(source=source, inputs={name: [row[name] for row in rows] for name in rows[0]}))
    return entries


def _executable_measurements(result: Any) -> list[np.ndarray]:
    """Per executable, measurements ``(shots, bits)`` of a program-set or single-program task result."""
    if hasattr(result, "measurements"):
        return [np.asarray(result.measurements)]
    return [np.asarray(result[p][e].measurements) for p in range(len(result)) for e in range(len(result[p]))]
