"""IBM Quantum twin: IAM, Global Search / Catalog and the Qiskit Runtime REST API on 127.0.0.1.

The unmodified ``QiskitRuntimeService`` / ``executor_sampler.Sampler`` / ``Session`` / ``Batch`` /
``RuntimeJobV2`` talk to it as to IBM Quantum (see :meth:`IBMTwin.env` for how a client is pointed here).
Backends are fake calibration snapshots of ``qiskit_ibm_runtime.fake_provider`` served under twin names
(configuration and properties verbatim, renamed). Jobs live in memory; executor programs (QPY circuits +
parameter tensors, ``ibm_quantum_schemas`` v2.0) run on Aer MPS on the physical qubits they use, ideal
or with the snapshot's noise model, one job at a time, after the queue delay, seeded ``seed + job
number``. Results are ``QuantumProgramResultModel`` v2.0. Billed QPU time follows a fixed model
(:func:`qpu_seconds`) so tests can check what the client reads.

Faults are scripted per test on :attr:`IBMTwin.faults`: HTTP errors or dropped connections on any route
(:class:`Fault`), failed or provider-cancelled jobs and a queue delay (:class:`Faults`); backend status
(:meth:`IBMTwin.set_status`), retirement (:meth:`IBMTwin.retire`) and revoked keys
(:meth:`IBMTwin.revoke_key`) on the twin itself. :attr:`IBMTwin.submissions` counts ``POST /jobs``
requests received (:attr:`IBMTwin.requests` every route), ``len(IBMTwin.jobs)`` the jobs created.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from ibm_quantum_schemas.common import CompressedTensorModel
from ibm_quantum_schemas.executor.version_2_0.models import (
    ChunkPart,
    ChunkSpan,
    ItemMetadataModel,
    MetadataModel,
    ParamsModel,
    QuantumProgramResultItemModel,
    QuantumProgramResultModel,
)
from qiskit_aer.primitives import SamplerV2 as AerSampler

from backends.aer import compact_pubs, noise_model

DEFAULT_CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/0123456789abcdef:twin-instance::"
QPU_SECONDS_PER_SHOT = 2.5e-4  # billed QPU time per executed shot (twin model)
QPU_SECONDS_PER_JOB = 2.0  # fixed billed overhead per job (twin model)
FAILED_REASON_CODE = 1517


def qpu_seconds(executions: int, shots: int) -> float:
    """Billed QPU seconds of a job running ``executions`` bound circuits with ``shots`` shots each."""
    return round(QPU_SECONDS_PER_JOB + executions * shots * QPU_SECONDS_PER_SHOT, 3)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Fault:
    """A scripted HTTP failure: the next ``times`` requests whose method is ``method`` and whose path
    matches ``path`` (a regular expression, e.g. ``r"/api/v1/jobs"``) get ``status`` (with a
    ``Retry-After`` header when ``retry_after`` is set) or, with ``status=None``, a dropped connection
    (headers sent, then the socket closed). ``after=True`` processes the request first, so the
    failure hides a change that did happen (e.g. a job created whose response never arrives)."""

    method: str
    path: str
    status: int | None = 500
    times: int = 1
    after: bool = False
    retry_after: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return self.hits < self.times and method == self.method and re.fullmatch(self.path, path) is not None


@dataclass
class Faults:
    """Faults of one twin: HTTP ``http`` faults, ``queue_delay_s`` seconds every job waits in the queue,
    ``usage_delay_s`` seconds after a job ends before its usage is final (``usage.status`` pending until then),
    ``job_failure`` (every job ends Failed with this reason), ``provider_cancel`` (every job is
    Cancelled by the provider when it leaves the queue, with this reason), ``run_delay_s`` seconds every job
    stays Running before it executes (a cancel ends the wait)."""

    http: list[Fault] = field(default_factory=list)
    queue_delay_s: float = 0.0
    run_delay_s: float = 0.0
    usage_delay_s: float = 0.0
    job_failure: str | None = None
    provider_cancel: str | None = None

    def add(self, fault: Fault) -> Fault:
        self.http.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self.http:
            if fault.matches(method, path):
                fault.hits += 1
                return fault
        return None


@dataclass
class TwinJob:
    """A job as the twin keeps it (``status``: Queued, Running, Completed, Failed, Cancelled)."""

    id: str
    number: int
    backend: str
    program_id: str
    params: dict[str, Any]
    tags: list[str]
    session_id: str | None
    created: str
    status: str = "Queued"
    reason: str | None = None
    reason_code: int | None = None
    running_at: str | None = None
    finished_at: str | None = None
    finished_mono: float | None = None
    result: str | None = None
    qpu_seconds: float | None = None
    executions: int = 0
    ended: threading.Event = field(default_factory=threading.Event)  # set when the job ends (or the twin stops)
    submitted_mono: float = field(default_factory=time.monotonic)

    @property
    def final(self) -> bool:
        return self.status in ("Completed", "Failed", "Cancelled")

    def end(self, status: str, reason: str | None = None, reason_code: int | None = None) -> None:
        self.status, self.reason, self.reason_code = status, reason, reason_code
        self.finished_at, self.finished_mono = _now(), time.monotonic()
        self.ended.set()


@dataclass
class TwinSession:
    id: str
    backend: str
    mode: str
    max_ttl: int | None
    created: str
    state: str = "open"
    accepting_jobs: bool = True
    closed_at: str | None = None


@dataclass
class BackendState:
    """What ``GET /backends/{name}/status`` answers: ``state`` (operational) and ``status``."""

    state: bool = True
    status: str = "active"


class DroppedConnection(Exception):
    """Raised inside the app after the response started: uvicorn closes the socket (a scripted drop)."""


class _IgnoreDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


class _FaultMiddleware:
    """ASGI middleware applying :class:`Fault` s before (or after) the twin's routes."""

    def __init__(self, app: Any, twin: IBMTwin) -> None:
        self.app, self.twin = app, twin

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.twin._lock:
            self.twin.requests[(scope["method"], scope["path"])] += 1
        fault = self.twin.faults.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.after:

            async def swallow(message: Any) -> None:
                return None

            await self.app(scope, receive, swallow)
        if fault.status is None:
            headers = [(b"content-type", b"application/json"), (b"content-length", b"1024")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise DroppedConnection(f"{scope['method']} {scope['path']}")
        extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        body = _errors(fault.status, f"scripted fault {fault.status}", "twin_fault")
        await JSONResponse(body, status_code=fault.status, headers=extra)(scope, receive, send)


def _errors(status: int, message: str, code: str) -> dict[str, Any]:
    """IBM Cloud API error body."""
    return {"errors": [{"code": code, "message": message}], "status_code": status, "trace": uuid.uuid4().hex}


def _fail(status: int, message: str, code: str) -> HTTPException:
    return HTTPException(status, detail=_errors(status, message, code))


@lru_cache(maxsize=8)
def _fake_files(fake: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Configuration and properties JSON of the fake snapshot ``fake`` (e.g. ``fake_lagos``)."""
    import qiskit_ibm_runtime.fake_provider as fp

    short = fake.removeprefix("fake_")
    folder = Path(fp.__file__).parent / "backends" / short
    conf = json.loads((folder / f"conf_{short}.json").read_text())
    props = json.loads((folder / f"props_{short}.json").read_text())
    return conf, props


class IBMTwin:
    """The twin server. ``backends`` maps served names to fake snapshot names (default: 27-qubit
    ``ibm_twin_algiers`` and 156-qubit ``ibm_twin_kingston``); ``noisy`` runs with the snapshot's noise model;
    ``api_key`` / ``crn`` are the one valid credential and instance; ``token_lifetime_s`` the lifetime of
    IAM access tokens; ``usage_limit_s`` the instance's QPU allowance (None: unlimited)."""

    def __init__(
        self,
        backends: dict[str, str] | None = None,
        *,
        noisy: bool = False,
        api_key: str = "twin-api-key-0123456789",
        crn: str = DEFAULT_CRN,
        seed: int = 1234,
        token_lifetime_s: int = 3600,
        usage_limit_s: float | None = None,
    ) -> None:
        self.backends = dict(backends or {"ibm_twin_algiers": "fake_algiers", "ibm_twin_kingston": "fake_kingston"})
        self.noisy = noisy
        self.api_key, self.crn, self.seed = api_key, crn, seed
        self.token_lifetime_s = token_lifetime_s
        self.usage_limit_s = usage_limit_s
        self.faults = Faults()
        self.jobs: dict[str, TwinJob] = {}
        self.sessions: dict[str, TwinSession] = {}
        self.status: dict[str, BackendState] = {name: BackendState() for name in self.backends}
        self.retired: set[str] = set()
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, path) -> requests received
        self.revoked = False
        self._secret = secrets.token_hex(16)
        self._lock = threading.RLock()
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ibm-twin-qpu")
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = _FaultMiddleware(self._build_app(), self)

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> IBMTwin:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, http="h11", log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        uvicorn_errors = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, _IgnoreDrops) for f in uvicorn_errors.filters):
            uvicorn_errors.addFilter(_IgnoreDrops())
        self._thread = threading.Thread(target=self._server.run, name="ibm-twin-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not (self._server.started and self._server.servers):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("IBM twin server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        for job in self.jobs.values():
            job.ended.set()
        self._runner.shutdown(wait=True, cancel_futures=True)
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)

    @property
    def url(self) -> str:
        assert self._server is not None and self._server.servers, "twin not started"
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        """Environment that points an unmodified client (and sqsnn's ``ibm:`` backend) at this twin."""
        return {
            "QISKIT_IBM_TOKEN": self.api_key,
            "QISKIT_IBM_INSTANCE": self.crn,
            "QISKIT_IBM_CHANNEL": "ibm_quantum_platform",
            "SQSNN_IBM_API_URL": f"{self.url}/api/v1",
            "IAM_URL": self.url,
            "GLOBAL_SEARCH_URL": f"{self.url}/global-search",
            "GLOBAL_CATALOG_URL": f"{self.url}/global-catalog",
        }

    # --- scripted state ---------------------------------------------------------------------------------
    def set_status(self, backend: str, *, state: bool, status: str) -> None:
        """Backend status as reported (e.g. ``state=False, status="maintenance"``)."""
        self.status[backend] = BackendState(state, status)

    def retire(self, backend: str) -> None:
        """The backend disappears from the listing; its routes answer 404."""
        self.retired.add(backend)

    def revoke_key(self) -> None:
        """IAM rejects the API key from now on and issued tokens stop being accepted."""
        self.revoked = True

    @property
    def submissions(self) -> int:
        """``POST /jobs`` requests received (each client retry counts)."""
        return self.requests[("POST", "/api/v1/jobs")]

    def job_states(self) -> list[str]:
        with self._lock:
            return [job.status for job in self.jobs.values()]

    # --- auth -------------------------------------------------------------------------------------------
    def _issue_token(self) -> dict[str, Any]:
        iat = int(time.time())
        claims = {"iat": iat, "exp": iat + self.token_lifetime_s, "sub": "twin-user", "key": self._key_digest()}
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        return {
            "access_token": token,
            "refresh_token": "not-supported",
            "token_type": "Bearer",
            "expires_in": self.token_lifetime_s,
            "expiration": claims["exp"],
            "scope": "ibm openid",
        }

    def _key_digest(self) -> str:
        return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]

    def _authorise(self, authorization: str | None) -> None:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "apikey" and secrets.compare_digest(value, self.api_key) and not self.revoked:
            return
        if scheme.lower() == "bearer" and not self.revoked:
            try:
                claims = jwt.decode(value, self._secret, algorithms=["HS256"])
            except jwt.PyJWTError:
                claims = {}
            if claims.get("key") == self._key_digest():
                return
        raise _fail(401, "Unauthorized: invalid or expired credentials", "unauthorized")

    # --- execution --------------------------------------------------------------------------------------
    def _queue_position(self, job: TwinJob) -> int | None:
        if job.status != "Queued":
            return None
        return sum(1 for j in self.jobs.values() if j.status == "Queued" and j.number < job.number)

    def _execute(self, job: TwinJob) -> None:
        wait = job.submitted_mono + self.faults.queue_delay_s - time.monotonic()
        if job.ended.wait(max(wait, 0.0)):
            return
        while not self.status[job.backend].state:  # a backend down for maintenance holds its queue
            if job.ended.wait(0.05):
                return
        with self._lock:
            if job.status != "Queued":
                return
            if self.faults.provider_cancel is not None:
                job.end("Cancelled", self.faults.provider_cancel)
                return
            job.status, job.running_at = "Running", _now()
        if job.ended.wait(self.faults.run_delay_s):  # cancelled while held running
            return
        try:
            result, executions, shots = self._run_program(job)
        except Exception as exc:  # a program the twin cannot run fails like a real job would
            result, executions, shots, failure = None, 0, 0, f"{type(exc).__name__}: {exc}"
        else:
            failure = self.faults.job_failure
        with self._lock:
            if job.status != "Running":  # cancelled while running
                return
            job.executions, job.qpu_seconds, job.result = executions, qpu_seconds(executions, shots), result
            if failure is not None:
                job.end("Failed", failure, FAILED_REASON_CODE)
            else:
                job.end("Completed")

    def _run_program(self, job: TwinJob) -> tuple[str, int, int]:
        """Run an executor program on Aer; returns (result JSON, bound circuits executed, shots)."""
        params = ParamsModel.model_validate(job.params)
        program = params.quantum_program
        circuits = program.circuits.to_python()
        pubs: list[tuple[Any, np.ndarray, int]] = []
        shapes = []
        for circuit, item in zip(circuits, program.items, strict=True):
            if item.item_type != "circuit":
                raise ValueError("the twin runs circuit items only (no samplex / twirling)")
            args = item.circuit_arguments.to_numpy()
            shape = np.broadcast_shapes(tuple(item.shape), args.shape[:-1])
            shapes.append(shape)
            pubs.append((circuit, np.broadcast_to(args, (*shape, args.shape[-1])), program.shots))
        pubs, used = compact_pubs(pubs)
        options: dict[str, Any] = {"method": "matrix_product_state", "max_parallel_threads": 1}
        if self.noisy:
            options["noise_model"] = noise_model(self.backends[job.backend], used)
        start = datetime.now(UTC)
        sampler = AerSampler(seed=self.seed + job.number, options={"backend_options": options})
        pub_results = sampler.run(pubs).result()
        data, parts = [], []
        for i, (pub_result, (circuit, _, _), shape) in enumerate(zip(pub_results, pubs, shapes, strict=True)):
            arrays = {
                creg.name: CompressedTensorModel.from_numpy(
                    getattr(pub_result.data, creg.name).to_bool_array(order="little")
                )
                for creg in circuit.cregs
            }
            data.append(QuantumProgramResultItemModel(results=arrays, metadata=ItemMetadataModel()))
            size = math.prod(shape)
            parts.append(
                ChunkPart(idx_item=i, size=size, permutation=list(range(len(shape))), element_range=(0, size, 1))
            )
        result = QuantumProgramResultModel(
            data=data,
            metadata=MetadataModel(chunk_timing=[ChunkSpan(start=start, stop=datetime.now(UTC), parts=parts)]),
            passthrough_data=program.passthrough_data,
            semantic_role=program.semantic_role,
        )
        return result.model_dump_json(), sum(p.size for p in parts), program.shots

    # --- documents ---------------------------------------------------------------------------------------
    def _job_doc(self, job: TwinJob, with_params: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": job.id,
            "backend": job.backend,
            "state": {"status": job.status, "reason": job.reason, "reason_code": job.reason_code},
            "status": job.status,
            "program": {"id": job.program_id},
            "created": job.created,
            "runtime": "",
            "tags": job.tags,
            "session_id": job.session_id,
            "private": False,
        }
        if with_params:
            doc["params"] = job.params
        return doc

    def _metrics(self, job: TwinJob) -> dict[str, Any]:
        settled = job.finished_mono is not None and time.monotonic() >= job.finished_mono + self.faults.usage_delay_s
        charged = (job.qpu_seconds or 0) if settled else 0
        doc: dict[str, Any] = {
            "timestamps": {"created": job.created, "running": job.running_at, "finished": job.finished_at},
            "bss": {"seconds": charged},
            "usage": {
                "quantum_seconds": charged,
                "seconds": charged,
                "qpu_charge_time_seconds": charged,
                "status": "complete" if settled else "pending",
            },
            "executions": job.executions,
            "qiskit_version": "twin",
        }
        position = self._queue_position(job)
        if position is not None:
            created = datetime.fromisoformat(job.created.replace("Z", "+00:00"))
            start = created + timedelta(seconds=self.faults.queue_delay_s)
            doc["position_in_queue"] = doc["position_in_provider"] = position
            doc["estimated_start_time"] = start.isoformat().replace("+00:00", "Z")
        return doc

    def _backend(self, name: str) -> str:
        if name not in self.backends or name in self.retired:
            raise _fail(404, f"Backend {name} not found", "backend_not_found")
        return self.backends[name]

    def _job(self, job_id: str) -> TwinJob:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise _fail(404, f"Job {job_id} not found", "job_not_found") from None

    def _session(self, session_id: str) -> TwinSession:
        try:
            return self.sessions[session_id]
        except KeyError:
            raise _fail(404, f"Session {session_id} not found", "session_not_found") from None

    def _consumed(self) -> float:
        return float(sum(j.qpu_seconds or 0 for j in self.jobs.values()))

    # --- routes -------------------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="IBM Quantum twin")

        @app.exception_handler(HTTPException)
        async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
            return JSONResponse(exc.detail, status_code=exc.status_code)

        def auth(authorization: str | None = Header(None)) -> None:
            self._authorise(authorization)

        @app.post("/identity/token")
        async def token(request: Request) -> JSONResponse:
            form = parse_qs((await request.body()).decode())
            grant, key = form.get("grant_type", [""])[0], form.get("apikey", [""])[0]
            if grant != "urn:ibm:params:oauth:grant-type:apikey" or self.revoked or key != self.api_key:
                body = {
                    "errorCode": "BXNIM0415E",
                    "errorMessage": "Provided API key could not be found.",
                    "context": {"requestId": uuid.uuid4().hex},
                }
                return JSONResponse(body, status_code=400)
            return JSONResponse(self._issue_token())

        @app.post("/global-search/v3/resources/search", dependencies=[Depends(auth)])
        def search() -> dict[str, Any]:
            item = {
                "crn": self.crn,
                "name": "sqsnn-twin",
                "service_plan_unique_id": "twin-plan",
                "tags": [],
                "doc": {"extensions": {"twin": {"backends": sorted(self.backends)}}},
            }
            return {"items": [item], "limit": 100, "search_cursor": None}

        @app.get("/global-catalog/{plan}", dependencies=[Depends(auth)])
        def catalog(plan: str) -> dict[str, Any]:
            return {
                "id": plan,
                "overview_ui": {"en": {"display_name": "Pay-as-you-go"}},
                "metadata": {"pricing": {"type": "paygo"}},
            }

        api = "/api/v1"

        @app.get(f"{api}/backends", dependencies=[Depends(auth)])
        def backends() -> dict[str, Any]:
            names = [n for n in self.backends if n not in self.retired]
            return {"devices": [{"name": n, "qubits": _fake_files(self.backends[n])[0]["n_qubits"]} for n in names]}

        @app.get(f"{api}/backends/{{name}}/configuration", dependencies=[Depends(auth)])
        def configuration(name: str) -> dict[str, Any]:
            conf, _ = _fake_files(self._backend(name))
            return {**conf, "backend_name": name, "simulator": False}

        @app.get(f"{api}/backends/{{name}}/properties", dependencies=[Depends(auth)])
        def properties(name: str) -> dict[str, Any]:
            _, props = _fake_files(self._backend(name))
            return {**props, "backend_name": name}

        @app.get(f"{api}/backends/{{name}}/status", dependencies=[Depends(auth)])
        def status(name: str) -> dict[str, Any]:
            self._backend(name)
            st = self.status[name]
            with self._lock:
                queued = sum(1 for j in self.jobs.values() if j.backend == name and not j.final)
            return {
                "state": st.state,
                "status": st.status,
                "message": "",
                "length_queue": queued,
                "backend_version": "1.0.0",
            }

        @app.get(f"{api}/instances/usage", dependencies=[Depends(auth)])
        def usage() -> dict[str, Any]:
            consumed = self._consumed()
            doc: dict[str, Any] = {"instance_id": self.crn, "usage_consumed_seconds": consumed}
            if self.usage_limit_s is not None:
                doc["usage_limit_seconds"] = self.usage_limit_s
                doc["usage_limit_reached"] = consumed >= self.usage_limit_s
            return doc

        @app.post(f"{api}/jobs", dependencies=[Depends(auth)])
        async def submit(request: Request) -> dict[str, Any]:
            body = await request.json()
            backend = str(body.get("backend", ""))
            self._backend(backend)
            if self.usage_limit_s is not None and self._consumed() >= self.usage_limit_s:
                raise _fail(409, "Usage exceeds instance limit", "usage_limit")
            session_id = body.get("session_id")
            with self._lock:
                if session_id is not None:
                    session = self._session(session_id)
                    if not session.accepting_jobs or session.backend != backend:
                        raise _fail(400, f"Session {session_id} does not accept jobs for {backend}", "session_closed")
                    session.state = "active"
                job = TwinJob(
                    id=f"twin-{uuid.uuid4().hex[:20]}",
                    number=len(self.jobs),
                    backend=backend,
                    program_id=str(body.get("program_id")),
                    params=body.get("params") or {},
                    tags=list(body.get("tags") or []),
                    session_id=session_id,
                    created=_now(),
                )
                self.jobs[job.id] = job
            self._runner.submit(self._execute, job)
            return {"id": job.id, "backend": backend, "session_id": session_id}

        @app.get(f"{api}/jobs", dependencies=[Depends(auth)])
        def list_jobs(request: Request) -> dict[str, Any]:
            q = request.query_params
            tags = set(q.getlist("tags"))
            with self._lock:
                jobs = [
                    j
                    for j in self.jobs.values()
                    if tags <= set(j.tags)
                    and (not q.get("backend") or j.backend == q["backend"])
                    and (not q.get("session_id") or j.session_id == q["session_id"])
                    and (q.get("pending") is None or (q["pending"] == "true") != j.final)
                ]
                jobs.sort(key=lambda j: j.number, reverse=q.get("sort") != "ASC")
                offset, limit = int(q.get("offset", 0)), int(q.get("limit", 200))
                page = [self._job_doc(j, False) for j in jobs[offset : offset + limit]]
            return {"jobs": page, "count": len(jobs), "limit": limit, "offset": offset}

        @app.get(f"{api}/jobs/{{job_id}}", dependencies=[Depends(auth)])
        def get_job(job_id: str, exclude_params: bool = False) -> dict[str, Any]:
            with self._lock:
                return self._job_doc(self._job(job_id), not exclude_params)

        @app.get(f"{api}/jobs/{{job_id}}/results", dependencies=[Depends(auth)])
        def results(job_id: str) -> Response:
            job = self._job(job_id)
            if job.status == "Completed" and job.result is not None:
                return Response(job.result, media_type="application/json")
            if job.status in ("Failed", "Cancelled"):
                return PlainTextResponse(job.reason or job.status)
            raise _fail(404, f"Job {job_id} has no results yet ({job.status})", "results_not_ready")

        @app.get(f"{api}/jobs/{{job_id}}/metrics", dependencies=[Depends(auth)])
        def metrics(job_id: str) -> dict[str, Any]:
            with self._lock:
                return self._metrics(self._job(job_id))

        @app.post(f"{api}/jobs/{{job_id}}/cancel", status_code=204, dependencies=[Depends(auth)])
        def cancel(job_id: str) -> Response:
            with self._lock:
                job = self._job(job_id)
                if job.final:
                    raise _fail(409, f"Job {job_id} is already {job.status}", "job_final")
                job.end("Cancelled", "Cancelled by user")
            return Response(status_code=204)

        @app.post(f"{api}/sessions", dependencies=[Depends(auth)])
        async def create_session(request: Request) -> dict[str, Any]:
            body = await request.json()
            backend = str(body.get("backend", ""))
            self._backend(backend)
            if body.get("mode") not in ("dedicated", "batch"):
                raise _fail(400, "mode must be 'dedicated' or 'batch'", "invalid_mode")
            session = TwinSession(
                f"twin-session-{uuid.uuid4().hex[:16]}", backend, body["mode"], body.get("max_ttl"), _now()
            )
            with self._lock:
                self.sessions[session.id] = session
            return {"id": session.id, "mode": session.mode, "backend_name": backend, "max_ttl": session.max_ttl}

        @app.get(f"{api}/sessions/{{session_id}}", dependencies=[Depends(auth)])
        def session_details(session_id: str) -> dict[str, Any]:
            s = self._session(session_id)
            return {
                "id": s.id,
                "backend_name": s.backend,
                "mode": s.mode,
                "state": s.state,
                "accepting_jobs": s.accepting_jobs,
                "max_ttl": s.max_ttl,
                "started_at": s.created,
                "closed_at": s.closed_at,
                "elapsed_time": sum(j.qpu_seconds or 0 for j in self.jobs.values() if j.session_id == s.id),
            }

        @app.patch(f"{api}/sessions/{{session_id}}", status_code=204, dependencies=[Depends(auth)])
        async def close_session(session_id: str, request: Request) -> Response:
            body = await request.json()
            with self._lock:
                s = self._session(session_id)
                if body.get("accepting_jobs") is False:
                    s.accepting_jobs, s.state, s.closed_at = False, "closed", _now()
            return Response(status_code=204)

        @app.delete(f"{api}/sessions/{{session_id}}/close", status_code=204, dependencies=[Depends(auth)])
        def cancel_session(session_id: str) -> Response:
            with self._lock:
                s = self._session(session_id)
                s.accepting_jobs, s.state, s.closed_at = False, "closed", _now()
                for job in self.jobs.values():
                    if job.session_id == s.id and not job.final:
                        job.end("Cancelled", "Session cancelled")
            return Response(status_code=204)

        return app
