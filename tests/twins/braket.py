"""Amazon Braket twin: a loopback HTTP server speaking the Braket REST calls of ``AwsDevice`` / ``AwsQuantumTask``
(GetDevice, SearchDevices, CreateQuantumTask, GetQuantumTask with QueueInfo, CancelQuantumTask).

Tasks run on Braket's own ``StateVectorSimulator`` (``DensityMatrixSimulator`` for :data:`DM_ARN`), seeded per task
from the twin's ``seed``, the task's content (device, shots, action) and how many earlier tasks had that same
content: a repeated sequence of submissions draws the same shots on every run (whatever the order of unrelated
tasks in between), a repeated task draws afresh. Their results are written to S3 (a moto server, reached by the
same boto3 clients) in Braket's result schema (``GateModelTaskResult`` or ``ProgramSetTaskResult``) under
``<outputS3KeyPrefix>/<task uuid>/results.json``, as the service does. Devices served: :data:`SIM_ARN` and
:data:`DM_ARN` (SV1/DM1-like simulators, capabilities of the local simulators, program sets included) and
:data:`QPU_ARN` (a gate-based QPU in the device-schema format, without reset or readable mid-circuit results,
with program-set limits and standardized calibration data).

Scripted per test: device status (:meth:`BraketTwin.set_status`), queue delay and holding tasks in the queue
(``queue_delay_s``, ``hold`` + :meth:`release`), the fate of the next tasks (:class:`TaskPlan`: FAILED with a
reason, CANCELLED by the provider, results missing from S3 until :meth:`publish_results`) and HTTP faults
(:class:`Fault`: throttling 429, 5xx, connection dropped before or after serving, wrong or expired
credentials) on chosen operations.
Requests signed with an access key id other than :data:`ACCESS_KEY_ID` get ``UnrecognizedClientException``.
``create_calls`` counts CreateQuantumTask requests; a repeated ``clientToken`` returns the task it created.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import boto3
import numpy as np

from backends.braket_sdk import import_braket_sdk

ACCOUNT_ID = "123456789012"  # moto's default account, so STS GetCallerIdentity agrees
REGION = "us-east-1"
ACCESS_KEY_ID = "AKIATWINEXAMPLE00001"
SECRET_ACCESS_KEY = "twinSecret/DO-NOT-LOG+0123456789abcdefABCDEF"  # planted: must never be printed
SIM_ARN = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
DM_ARN = "arn:aws:braket:::device/quantum-simulator/amazon/dm1"
QPU_ARN = f"arn:aws:braket:{REGION}::device/qpu/twin/gate-qpu"
PROGRAM = "braket.ir.openqasm.program"
PROGRAM_SET = "braket.ir.openqasm.program_set"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

Operation = Literal["GetDevice", "SearchDevices", "CreateQuantumTask", "GetQuantumTask", "CancelQuantumTask"]
FaultKind = Literal["throttle", "server_error", "drop", "drop_after", "bad_credentials", "expired_credentials"]
_FAULT_ANSWERS: dict[str, tuple[int, str, str]] = {
    "throttle": (429, "ThrottlingException", "Rate exceeded"),
    "server_error": (500, "InternalServiceException", "The request failed because of an unknown error."),
    "bad_credentials": (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
    "expired_credentials": (403, "ExpiredTokenException", "The security token included in the request is expired"),
}


@dataclass
class Fault:
    """Answer the next ``times`` requests of ``operation`` with ``kind`` instead of serving them; ``drop``
    closes the connection unanswered, ``drop_after`` serves the request first (the answer is lost)."""

    operation: Operation
    kind: FaultKind
    times: int = 1


@dataclass
class TaskPlan:
    """Fate of the next created task: ``failed`` (FAILED with ``reason``), ``cancelled`` (CANCELLED by the
    provider), ``result_missing`` (COMPLETED, results.json written only by :meth:`BraketTwin.publish_results`)."""

    fate: Literal["failed", "cancelled", "result_missing"]
    reason: str = "An error occurred on the device while running the program."


@dataclass
class TwinDevice:
    arn: str
    name: str
    provider: str
    device_type: Literal["SIMULATOR", "QPU"]
    capabilities: dict[str, Any]
    status: str = "ONLINE"

    def summary(self) -> dict[str, Any]:
        return {
            "deviceArn": self.arn,
            "deviceName": self.name,
            "providerName": self.provider,
            "deviceType": self.device_type,
            "deviceStatus": self.status,
        }


@dataclass
class TwinTask:
    arn: str
    device_arn: str
    action: str
    action_type: str
    shots: int
    bucket: str
    directory: str
    client_token: str
    tags: dict[str, str]
    associations: list[dict[str, str]]  # e.g. a Braket Direct reservation (type RESERVATION_TIME_WINDOW_ARN)
    plan: TaskPlan | None
    executables: int
    programs: int
    seed: int  # the simulator's sampling seed
    status: str = "QUEUED"
    created_at: str = field(default_factory=lambda: _now())
    queued_at: float = field(default_factory=time.monotonic)
    ended_at: str | None = None
    failure_reason: str | None = None
    unpublished: str | None = None  # results.json body withheld (plan result_missing)

    def describe(self, position: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "quantumTaskArn": self.arn,
            "status": self.status,
            "deviceArn": self.device_arn,
            "deviceParameters": "{}",
            "shots": self.shots,
            "outputS3Bucket": self.bucket,
            "outputS3Directory": self.directory,
            "createdAt": self.created_at,
            "tags": self.tags,
            "associations": self.associations,
            "actionMetadata": {
                "actionType": self.action_type,
                "programCount": self.programs,
                "executableCount": self.executables,
            },
            "queueInfo": {
                "queue": "QUANTUM_TASKS_QUEUE",
                "position": str(position) if position is not None else "None",
                "queuePriority": "Normal",
            },
        }
        if self.ended_at:
            out["endedAt"] = self.ended_at
        if self.failure_reason:
            out["failureReason"] = self.failure_reason
        if self.status == "COMPLETED":
            out["numSuccessfulShots"] = self.shots
        return out


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def simulator_capabilities(backend: Literal["braket_sv", "braket_dm"] = "braket_sv") -> dict[str, Any]:
    """A local simulator's capabilities (program sets included), as SV1 / DM1 publish theirs."""
    import_braket_sdk()
    from braket.devices import LocalSimulator

    caps: dict[str, Any] = json.loads(LocalSimulator(backend).properties.json())
    caps["service"]["getTaskPollIntervalMillis"] = 50
    return caps


def qpu_capabilities(
    *, qubits: int = 12, max_executables: int = 100, max_total_shots: int = 200_000, program_sets: bool = True
) -> dict[str, Any]:
    """A gate-based QPU in the IQM device-schema format: linear connectivity, no reset, program-set limits,
    and standardized one/two-qubit calibration data; validated against the schema."""
    from braket.device_schema.iqm.iqm_device_capabilities_v1 import IqmDeviceCapabilities

    ops = ["ccnot", "cnot", "cphaseshift", "cswap", "cz", "h", "i", "prx", "rx", "ry", "rz", "s", "t", "x", "y", "z"]
    action: dict[str, Any] = {
        PROGRAM: {
            "actionType": PROGRAM,
            "version": ["1"],
            "supportedOperations": ops,
            "supportedResultTypes": [],
            "supportedPragmas": ["verbatim"],
        }
    }
    if program_sets:
        action[PROGRAM_SET] = {
            "actionType": PROGRAM_SET,
            "version": ["1"],
            "maximumExecutables": max_executables,
            "maximumTotalShots": max_total_shots,
        }
    fid = {"name": "RANDOMIZED_BENCHMARKING"}
    one = {
        str(q): {
            "T1": {"value": 4.0e-5 + 1e-6 * q, "standardError": None, "unit": "S"},
            "T2": {"value": 2.0e-5 + 1e-6 * q, "standardError": None, "unit": "S"},
            "oneQubitFidelity": [{"fidelityType": fid, "fidelity": 0.999 - 1e-4 * q, "standardError": None}],
        }
        for q in range(qubits)
    }
    two = {
        f"{q}-{q + 1}": {"twoQubitGateFidelity": [{"gateName": "CZ", "fidelity": 0.99, "fidelityType": fid}]}
        for q in range(qubits - 1)
    }
    doc = {
        "braketSchemaHeader": {"name": "braket.device_schema.iqm.iqm_device_capabilities", "version": "1"},
        "service": {
            "braketSchemaHeader": {"name": "braket.device_schema.device_service_properties", "version": "1"},
            "executionWindows": [
                {"executionDay": "Everyday", "windowStartHour": "00:00:00", "windowEndHour": "23:59:59"}
            ],
            "shotsRange": [1, 20000],
            "updatedAt": "2026-11-01T06:00:00",
            "getTaskPollIntervalMillis": 50,
        },
        "action": action,
        "deviceParameters": {},
        "paradigm": {
            "braketSchemaHeader": {
                "name": "braket.device_schema.gate_model_qpu_paradigm_properties",
                "version": "1",
            },
            "connectivity": {
                "fullyConnected": False,
                "connectivityGraph": {str(q): [str(q + 1)] for q in range(qubits - 1)},
            },
            "qubitCount": qubits,
            "nativeGateSet": ["cz", "prx"],
        },
        "standardized": {
            "braketSchemaHeader": {
                "name": "braket.device_schema.standardized_gate_model_qpu_device_properties",
                "version": "1",
            },
            "oneQubitProperties": one,
            "twoQubitProperties": two,
        },
    }
    return json.loads(IqmDeviceCapabilities.parse_obj(doc).json())


class BraketTwin:
    """The twin: devices, tasks, faults and the HTTP server (start with :meth:`start`, stop with :meth:`stop`)."""

    def __init__(self, s3_endpoint: str, seed: int = 1234) -> None:
        self.s3_endpoint, self.seed = s3_endpoint, seed
        self.devices: dict[str, TwinDevice] = {
            SIM_ARN: TwinDevice(SIM_ARN, "SV1", "Amazon Braket", "SIMULATOR", simulator_capabilities()),
            DM_ARN: TwinDevice(DM_ARN, "DM1", "Amazon Braket", "SIMULATOR", simulator_capabilities("braket_dm")),
            QPU_ARN: TwinDevice(QPU_ARN, "gate-qpu", "Twin", "QPU", qpu_capabilities()),
        }
        self.tasks: dict[str, TwinTask] = {}
        self.faults: list[Fault] = []
        self.plans: deque[TaskPlan] = deque()
        self.queue_delay_s = 0.0
        self.run_delay_s = 0.0  # seconds a task stays RUNNING before it executes (a cancel ends the wait)
        self.hold = False
        self.create_calls = 0
        self.cancel_calls: dict[str, int] = {}  # CancelQuantumTask requests accepted, per task ARN
        self.requests: list[tuple[str, str]] = []  # (operation, path) of every request served or faulted
        self._tokens: dict[str, str] = {}
        self._repeats: dict[bytes, int] = {}  # tasks created so far per content digest
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._s3 = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        handler = type("Handler", (_Handler,), {"twin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="braket-twin-http", daemon=True),
            threading.Thread(target=self._run_queue, name="braket-twin-qpu", daemon=True),
        ]

    # --- life cycle ------------------------------------------------------------------------------------
    def start(self) -> BraketTwin:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def env(self) -> dict[str, str]:
        """Environment that points boto3 / the Braket SDK (in this or a worker process) at the twin."""
        return {
            "AWS_ENDPOINT_URL_BRAKET": self.url,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            "AWS_ENDPOINT_URL_STS": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_RETRY_MODE": "standard",
            "AWS_MAX_ATTEMPTS": "2",
            "AWS_CONFIG_FILE": "/dev/null",  # no profile of the machine's user leaks in
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }

    # --- scripting -------------------------------------------------------------------------------------
    def set_status(self, arn: str, status: Literal["ONLINE", "OFFLINE", "RETIRED"]) -> None:
        self.devices[arn].status = status

    def reset(self) -> None:
        """Undo the scripting of an earlier test (faults, plans, hold, queue and run delays, device status and
        capabilities); tasks and ``create_calls`` stay, so a shared twin keeps counting."""
        with self._lock:
            self.faults.clear()
            self.plans.clear()
            self.queue_delay_s = 0.0
            self.run_delay_s = 0.0
            self.hold = False
            for device in self.devices.values():
                device.status = "ONLINE"
            self.devices[SIM_ARN].capabilities = simulator_capabilities()
            self.devices[DM_ARN].capabilities = simulator_capabilities("braket_dm")
            self.devices[QPU_ARN].capabilities = qpu_capabilities()
            self._wake.notify_all()

    def plan(self, *plans: TaskPlan) -> None:
        """Fates of the next created tasks, in order (tasks beyond them complete normally)."""
        self.plans.extend(plans)

    def release(self) -> None:
        """Stop holding: queued tasks start running."""
        with self._lock:
            self.hold = False
            self._wake.notify_all()

    def publish_results(self) -> None:
        """Write the withheld results.json of ``result_missing`` tasks."""
        with self._lock:
            for task in self.tasks.values():
                if task.unpublished is not None:
                    self._put_result(task, task.unpublished)
                    task.unpublished = None

    def statuses(self) -> list[str]:
        with self._lock:
            return [task.status for task in self.tasks.values()]

    def wait_for(self, status: str, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` tasks are in ``status``."""
        deadline = time.monotonic() + timeout
        while self.statuses().count(status) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"twin: {count} tasks not {status} after {timeout} s: {self.statuses()}")
            time.sleep(0.02)

    def take_fault(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.operation == operation and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    # --- API operations (called by the handler; return (status, body) or raise ApiError) --------------
    def get_device(self, arn: str) -> dict[str, Any]:
        device = self._device(arn)
        queued = sum(t.status == "QUEUED" and t.device_arn == arn for t in self.tasks.values())
        return {
            **device.summary(),
            "deviceCapabilities": json.dumps(device.capabilities),
            "deviceQueueInfo": [
                {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": str(queued), "queuePriority": "Normal"},
                {"queue": "JOBS_QUEUE", "queueSize": "0"},
            ],
        }

    def search_devices(self, body: dict[str, Any]) -> dict[str, Any]:
        devices = list(self.devices.values())
        for flt in body.get("filters", []):
            key = {"deviceArn": "arn", "deviceType": "device_type", "deviceStatus": "status"}.get(flt["name"])
            if key is None:
                key = {"deviceName": "name", "providerName": "provider"}.get(flt["name"], "")
            if key:
                devices = [d for d in devices if getattr(d, key) in flt["values"]]
        return {"devices": [d.summary() for d in devices]}

    def create_task(self, body: dict[str, Any]) -> dict[str, Any]:
        from braket.ir.openqasm import ProgramSet
        from braket.schema_common import BraketSchemaBase

        with self._lock:
            self.create_calls += 1
            token = str(body["clientToken"])
            if token in self._tokens:
                return {"quantumTaskArn": self._tokens[token]}
            device = self._device(body["deviceArn"])
            if device.status == "OFFLINE":
                raise ApiError(424, "DeviceOfflineException", "Device is offline.")
            if device.status == "RETIRED":
                raise ApiError(410, "DeviceRetiredException", "Device has been retired.")
            ir = BraketSchemaBase.parse_raw_schema(body["action"])
            action_type = ir.braketSchemaHeader.name
            if action_type not in device.capabilities["action"]:
                raise ApiError(400, "ValidationException", f"Device does not support action {action_type}.")
            shots = int(body["shots"])
            programs, executables = 1, 1
            if isinstance(ir, ProgramSet):
                programs = len(ir.programs)
                executables = sum(max((len(v) for v in (p.inputs or {}).values()), default=1) for p in ir.programs)
                limits = device.capabilities["action"][PROGRAM_SET]
                if executables > limits["maximumExecutables"] or shots > limits["maximumTotalShots"]:
                    raise ApiError(400, "ValidationException", "Program set exceeds the device's limits.")
                if shots % executables:
                    raise ApiError(400, "ValidationException", "Shots must be divisible by the executables.")
            task_id = str(uuid.uuid4())
            arn = f"arn:aws:braket:{REGION}:{ACCOUNT_ID}:quantum-task/{task_id}"
            digest = hashlib.sha256(f"{device.arn}\n{shots}\n{body['action']}".encode()).digest()
            repeat = self._repeats[digest] = self._repeats.get(digest, -1) + 1
            task = TwinTask(
                arn=arn,
                device_arn=device.arn,
                action=body["action"],
                action_type=action_type,
                shots=shots,
                bucket=body["outputS3Bucket"],
                directory=f"{body['outputS3KeyPrefix']}/{task_id}",
                client_token=token,
                tags=dict(body.get("tags") or {}),
                associations=[dict(a) for a in body.get("associations") or []],
                plan=self.plans.popleft() if self.plans else None,
                executables=executables,
                programs=programs,
                seed=int.from_bytes(hashlib.sha256(digest + f"{self.seed}/{repeat}".encode()).digest()[:8], "big"),
            )
            self.tasks[arn] = task
            self._tokens[token] = arn
            self._wake.notify_all()
            return {"quantumTaskArn": arn}

    def get_task(self, arn: str) -> dict[str, Any]:
        with self._lock:
            task = self._task(arn)
            queued = [t for t in self.tasks.values() if t.status == "QUEUED" and t.device_arn == task.device_arn]
            position = queued.index(task) + 1 if task in queued else None
            return task.describe(position)

    def cancel_task(self, arn: str) -> dict[str, Any]:
        with self._lock:
            task = self._task(arn)
            if task.status in TERMINAL:
                raise ApiError(409, "ConflictException", f"Quantum task is in terminal state {task.status}.")
            self.cancel_calls[arn] = self.cancel_calls.get(arn, 0) + 1
            if task.status != "CANCELLING":  # a second request while cancelling changes nothing
                task.status = "CANCELLING" if task.status == "RUNNING" else "CANCELLED"
            if task.status == "CANCELLED":
                task.ended_at = _now()
            self._wake.notify_all()
            return {"quantumTaskArn": arn, "cancellationStatus": task.status}

    def _device(self, arn: str) -> TwinDevice:
        if arn not in self.devices:
            raise ApiError(404, "ResourceNotFoundException", "Braket device not found.")
        return self.devices[arn]

    def _task(self, arn: str) -> TwinTask:
        if arn not in self.tasks:
            raise ApiError(404, "ResourceNotFoundException", "Quantum task not found.")
        return self.tasks[arn]

    # --- the device queue ------------------------------------------------------------------------------
    def _next_runnable(self) -> TwinTask | None:
        if self.hold:
            return None
        now = time.monotonic()
        for task in self.tasks.values():
            if task.status == "QUEUED" and now - task.queued_at >= self.queue_delay_s:
                return task
        return None

    def _run_queue(self) -> None:
        while True:
            with self._lock:
                task = self._next_runnable()
                while task is None and not self._stopping:
                    self._wake.wait(timeout=0.02)
                    task = self._next_runnable()
                if self._stopping:
                    return
                assert task is not None
                task.status = "RUNNING"
                deadline = time.monotonic() + self.run_delay_s
                while task.status == "RUNNING" and not self._stopping and time.monotonic() < deadline:
                    self._wake.wait(timeout=0.02)
            planned = task.plan is not None and task.plan.fate != "result_missing"
            body = None if planned or task.status == "CANCELLING" else self._simulate(task)
            with self._lock:
                self._finish(task, body)

    def _finish(self, task: TwinTask, body: str | None) -> None:
        task.ended_at = _now()
        if task.status == "CANCELLING" or (task.plan is not None and task.plan.fate == "cancelled"):
            task.status = "CANCELLED"
        elif task.plan is not None and task.plan.fate == "failed":
            task.status, task.failure_reason = "FAILED", task.plan.reason
        else:
            assert body is not None
            if task.plan is not None and task.plan.fate == "result_missing":
                task.unpublished = body
            else:
                self._put_result(task, body)
            task.status = "COMPLETED"

    def _simulate(self, task: TwinTask) -> str:
        from braket.schema_common import BraketSchemaBase

        simulator = _seeded_simulator(task.device_arn == DM_ARN, np.random.default_rng(task.seed))
        result = simulator.run(BraketSchemaBase.parse_raw_schema(task.action), shots=task.shots)
        metadata = result.taskMetadata
        metadata.id, metadata.deviceId = task.arn, task.device_arn
        return str(result.json())

    def _put_result(self, task: TwinTask, body: str) -> None:
        self._s3.put_object(Bucket=task.bucket, Key=f"{task.directory}/results.json", Body=body.encode())


def _seeded_simulator(density_matrix: bool, rng: np.random.Generator) -> Any:
    """Braket's ``DensityMatrixSimulator`` / ``StateVectorSimulator`` drawing every shot (mid-circuit branches
    included) from ``rng``. Their simulations take no seed: each creates a fresh ``default_rng()`` as
    ``_rng_generator``, which this replaces; a release that renames it fails here rather than going unseeded."""
    import_braket_sdk()
    from braket.default_simulator import DensityMatrixSimulator, StateVectorSimulator

    base: Any = DensityMatrixSimulator if density_matrix else StateVectorSimulator

    class Seeded(base):  # type: ignore[misc,valid-type]
        def initialize_simulation(self, **kwargs: Any) -> Any:
            simulation = super().initialize_simulation(**kwargs)
            if not hasattr(simulation, "_rng_generator"):
                raise RuntimeError(f"{type(simulation).__name__} no longer draws from _rng_generator: reseed the twin")
            simulation._rng_generator = rng
            return simulation

    return Seeded()


class ApiError(Exception):
    """An error answer in the restJson shape botocore parses into ``ClientError``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_ROUTES: list[tuple[str, re.Pattern[str], Operation]] = [
    ("GET", re.compile(r"^/device/(?P<arn>[^/]+)$"), "GetDevice"),
    ("POST", re.compile(r"^/devices$"), "SearchDevices"),
    ("POST", re.compile(r"^/quantum-task$"), "CreateQuantumTask"),
    ("GET", re.compile(r"^/quantum-task/(?P<arn>[^/]+)$"), "GetQuantumTask"),
    ("PUT", re.compile(r"^/quantum-task/(?P<arn>[^/]+)/cancel$"), "CancelQuantumTask"),
]
_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


class _Handler(BaseHTTPRequestHandler):
    twin: BraketTwin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``BraketTwin.requests`` instead of an access log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        found = [(op, m) for verb, pattern, op in _ROUTES if verb == method and (m := pattern.match(path))]
        if not found:
            self._answer(404, {"message": f"no route {method} {path}"}, "ResourceNotFoundException")
            return
        operation, match = found[0]
        self.twin.requests.append((operation, path))
        fault = self.twin.take_fault(operation)
        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        try:
            if fault is not None and fault.kind != "drop_after":
                status, code, message = _FAULT_ANSWERS[fault.kind]
                raise ApiError(status, code, message)
            key = _CREDENTIAL.search(self.headers.get("Authorization", ""))
            if key is None or key.group(1) != ACCESS_KEY_ID:
                raise ApiError(403, "UnrecognizedClientException", _FAULT_ANSWERS["bad_credentials"][2])
            arn = unquote(match.group("arn")) if "arn" in match.groupdict() else ""
            body = json.loads(raw or b"{}")
            answers = {
                "GetDevice": lambda: (200, self.twin.get_device(arn)),
                "SearchDevices": lambda: (200, self.twin.search_devices(body)),
                "CreateQuantumTask": lambda: (201, self.twin.create_task(body)),
                "GetQuantumTask": lambda: (200, self.twin.get_task(arn)),
                "CancelQuantumTask": lambda: (200, self.twin.cancel_task(arn)),
            }
            status, answer = answers[operation]()
        except ApiError as err:
            self._answer(err.status, {"message": err.message}, err.code)
            return
        if fault is not None:  # drop_after
            self._drop()
            return
        self._answer(status, answer)

    def _drop(self) -> None:
        self.close_connection = True
        self.connection.shutdown(2)

    def _answer(self, status: int, body: dict[str, Any], error_code: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_code:
            self.send_header("x-amzn-ErrorType", error_code)
        self.end_headers()
        self.wfile.write(data)
