"""``braket-local:sv|dm`` (Braket LocalSimulator) and ``braket:<device ARN>`` (AwsDevice).

Each chunk of neurons is one parameterised OpenQASM 3 program in Braket built-in gate names
(:func:`backends.qasm.native_qasm`); each sample is one task with its own ``inputs`` (Braket has no batch
binding), so a layer costs ``chunks x B`` tasks. Multi-shot rows come back grouped by measurement branch
and are shuffled. The local simulators run mid-circuit measurement and reset (slowly: keep 1-4 neurons per
program). No Braket QPU returns mid-circuit results, so QPUs use the deferred layout by default (T fresh
I/O qubits per neuron) and a forced mid-circuit layout is refused unless the device lists ``reset``.
Device limits (OpenQASM action, gate set, qubit count, shots range, status, execution windows) are read
from the device properties and checked before anything is submitted. Re-submitting with the same
``idempotency_key`` reuses each task's deterministic ``clientToken``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from backends.base import (
    Availability,
    BackendRefused,
    BackendUnavailable,
    Capabilities,
    CircuitMode,
    JobState,
    LayerResult,
    SubmittedJob,
    normalise_state,
)
from backends.common import BaseBackend, LayerRequest
from backends.compiler import LayerCircuit, chunk_bounds, decode_spikes
from backends.options import BraketOptions
from backends.prices import braket_prices
from backends.qasm import native_qasm, program_inputs

OPENQASM_ACTION = "braket.ir.openqasm.program"
REQUIRED_GATES = ("rx", "rz", "h", "cnot")
LOCAL_DEVICES = {"sv": "braket_sv", "dm": "braket_dm"}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def device_capabilities(props: Mapping[str, Any], *, hardware: bool) -> Capabilities:
    """Capabilities from a Braket device-properties document (``device.properties.dict()``)."""
    action = props.get("action", {}).get(OPENQASM_ACTION)
    if action is None:
        raise BackendRefused("device does not accept OpenQASM 3 programs (no braket.ir.openqasm.program action)")
    ops = {str(o).lower() for o in action.get("supportedOperations", [])}
    missing = [g for g in REQUIRED_GATES if g not in ops]
    if missing:
        raise BackendRefused(f"device gate set lacks {missing} needed by the SQS program")
    lo, hi = props["service"]["shotsRange"]
    reset = "reset" in ops or not hardware  # the local simulators run reset without listing it
    return Capabilities(
        provider="braket",
        mid_circuit_measurement=reset,
        reset=reset,
        readable_mid_circuit=not hardware,
        hardware=hardware,
        noisy=hardware,
        parameter_batches=False,
        modes=("quantum", "memoryless") if reset else ("quantum",),
        max_qubits=int(props["paradigm"]["qubitCount"]),
        min_shots=max(int(lo), 1),
        max_shots=int(hi),
    )


def in_execution_window(windows: list[Mapping[str, Any]], now: datetime) -> bool:
    """Whether ``now`` (UTC) falls inside one of the device's execution windows."""
    if not windows:
        return True
    day, clock = _DAYS[now.weekday()], now.strftime("%H:%M:%S")
    for w in windows:
        days = str(w.get("executionDay", "Everyday"))
        if days == "Everyday" or days == day or (days == "Weekdays" and now.weekday() < 5):
            pass
        elif not (days == "Weekend" and now.weekday() >= 5):
            continue
        start, end = str(w["windowStartHour"]), str(w["windowEndHour"])
        if (start <= clock < end) if start <= end else (clock >= start or clock < end):
            return True
    return False


class BraketBackend(BaseBackend):
    """Braket local simulator (``target`` = ``sv`` / ``dm``) or device (``target`` = ARN)."""

    def __init__(self, target: str, *, local: bool, options: BraketOptions | None = None, device: Any = None) -> None:
        """``device``: an already constructed ``AwsDevice``-like object (properties, status, aws_session)."""
        self.options = options or BraketOptions()
        self.local = local
        self.target = target
        if local and target not in LOCAL_DEVICES:
            raise ValueError(f"braket-local target must be 'sv' or 'dm', got {target!r}")
        self.name = f"braket-local:{target}" if local else f"braket:{target}"
        if self.options.layout == "auto":
            self.layout = "mid-circuit" if local else "deferred"
        else:
            self.layout = self.options.layout
        self._device: Any = device
        self._programs: dict[tuple[int, int, str, bool], tuple[LayerCircuit, str]] = {}
        self._batches: dict[str, list[Any]] = {}

    def device(self) -> Any:
        if self._device is None:
            if self.local:
                from braket.devices import LocalSimulator

                self._device = LocalSimulator(LOCAL_DEVICES[self.target])
            else:
                from braket.aws import AwsDevice

                try:
                    self._device = AwsDevice(self.target)
                except Exception as exc:  # no credentials, no network, unknown ARN
                    raise BackendUnavailable(
                        f"{self.name}: device not reachable ({type(exc).__name__}); configure AWS "
                        "credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID or ~/.aws) and check the ARN"
                    ) from None
        return self._device

    def _properties(self) -> dict[str, Any]:
        props = self.device().properties
        return dict(props.dict()) if hasattr(props, "dict") else dict(props)

    def neurons_per_circuit(self) -> int:
        return self.options.neurons_per_circuit

    def tasks_per_chunk(self, batch: int) -> int:
        return batch

    def jobs_for(self, pubs: int) -> int:
        return pubs  # every Braket task is a provider job

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        if self.local:
            return 0.0, "local simulator"
        prices = braket_prices()
        per_shot = prices.per_shot.get(self.target)
        if per_shot is None:
            return None, f"no price recorded for {self.target} ({prices.source})"
        return tasks * prices.per_task + shots * per_shot, f"Braket on-demand prices as of {prices.as_of}"

    def capabilities(self) -> Capabilities:
        return device_capabilities(self._properties(), hardware=not self.local)

    def availability(self) -> Availability:
        try:
            device = self.device()
        except BackendUnavailable as exc:
            return Availability(False, str(exc))
        if self.local:
            return Availability(True, "local simulator")
        status = str(device.status)
        if status != "ONLINE":
            return Availability(False, f"{self.name}: device status {status}")
        windows = self._properties()["service"].get("executionWindows", [])
        if not in_execution_window(windows, datetime.now(UTC)):
            return Availability(True, "online; outside its execution windows: tasks wait in the queue")
        return Availability(True, "online")

    def _program(self, n: int, steps: int, mode: CircuitMode, prepare: bool) -> tuple[LayerCircuit, str]:
        key = (n, steps, mode, prepare)
        if key not in self._programs:
            lc = self.layer_circuit(n, steps, mode, prepare)
            self._programs[key] = (lc, native_qasm(lc))
        return self._programs[key]

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        from braket.ir.openqasm import Program

        zz, ang, shots, memory_angles = request.z, request.angles, request.shots, request.memory_angles
        steps, batch, n = zz.shape
        chunks = chunk_bounds(n, self.options.neurons_per_circuit)
        job = self._submitted(
            request,
            job_ids=[],
            chunks=chunks,
            layout=self.layout,
            qubits_per_circuit=self.qubits_per_neuron(steps) * min(n, self.options.neurons_per_circuit),
            calibration=None if self.local else self._calibration(),
        )
        handles: list[Any] = []
        for a, b in chunks:
            lc, source = self._program(b - a, steps, request.mode, memory_angles is not None)
            mem = None if memory_angles is None else np.asarray(memory_angles)[..., a:b]
            inputs = program_inputs(lc, zz[:, :, a:b], ang[..., a:b], mem)
            if self.local:
                tasks = self.device().run_batch([Program(source=source)] * batch, shots=shots, inputs=inputs)
                results = tasks.results()  # the local simulator runs the batch synchronously
                handles.append(results)
                job.job_ids += [str(r.task_metadata.id) for r in results]
            else:
                for i, values in enumerate(inputs):
                    token = f"{request.idempotency_key or job.local_key}/{a}/{i}"
                    arn = self._create_task(Program(source=source, inputs=values), shots, token, job.local_key)
                    job.job_ids.append(arn)
        self._batches[job.local_key] = handles
        return job

    def _create_task(self, program: Any, shots: int, token: str, key: str) -> str:
        session = self.device().aws_session
        bucket = self.options.s3_bucket or session.default_bucket()
        return str(
            session.create_quantum_task(
                deviceArn=self.target,
                action=program.json(),
                shots=shots,
                outputS3Bucket=bucket,
                outputS3KeyPrefix=f"{self.options.s3_prefix}/tasks",
                clientToken=hashlib.sha256(token.encode()).hexdigest()[:64],
                tags={"sqsnn-submission": key},
            )
        )

    def poll(self, job: SubmittedJob) -> JobState:
        if self.local:
            return "done" if job.local_key in self._batches else "failed"
        from braket.aws import AwsQuantumTask

        states = {normalise_state(AwsQuantumTask(arn).state()) for arn in job.job_ids}
        order: tuple[JobState, ...] = ("failed", "cancelled", "running", "queued")
        return next((state for state in order if state in states), "done")

    def fetch(self, job: SubmittedJob) -> LayerResult:
        rng = np.random.default_rng(int(hashlib.sha256(job.local_key.encode()).hexdigest()[:8], 16))
        rows: list[np.ndarray] = []  # per chunk: (B, S, bits)
        if self.local:
            for results in self._batches.pop(job.local_key):
                rows.append(np.stack([r.measurements for r in results]))
        else:
            from braket.aws import AwsQuantumTask

            results = [AwsQuantumTask(arn).result().measurements for arn in job.job_ids]
            rows = [np.stack(results[i * job.batch : (i + 1) * job.batch]) for i in range(len(job.chunks))]
        parts = []
        for (a, b), meas in zip(job.chunks, rows, strict=True):
            shuffled = meas[:, rng.permutation(meas.shape[1]), :]  # rows come grouped by branch
            parts.append(decode_spikes(shuffled, b - a, job.steps))
        return LayerResult(
            spikes=np.concatenate(parts, axis=-1),
            backend=self.name,
            job_ids=job.job_ids,
            circuits=len(job.chunks),
            jobs=len(job.job_ids),
            shots=job.batch * job.shots * len(job.chunks),
            qubits_per_circuit=job.qubits_per_circuit,
            qubits_used=job.qubits_used,
            calibration=job.calibration,
        )

    def _calibration(self) -> dict[str, Any]:
        props = self._properties()
        return {
            "backend": self.target,
            "calibrated_at": str(props.get("service", {}).get("updatedAt")),
            "standardized": props.get("standardized"),
        }
