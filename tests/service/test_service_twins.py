"""End to end through the provider twins: ``POST /v1/jobs`` inference on ``ibm:<twin backend>`` and
``braket:<twin device ARN>`` -> a real prefork Celery worker (deployed shape, twin environment) -> the
unmodified qiskit-ibm-runtime / amazon-braket-sdk clients -> the twins (tests/twins) -> results, on real
PostgreSQL and Redis.

Checked: results and spikes over SSE; the twin's spikes are samples of the exact model (a calibration
z-test of every observed spike against its exact conditional probability) and its accuracy equals the exact
engine's within a two-proportion bound; cancelling mid-queue cancels the provider job; each scripted fault
ends in its documented job state with the job row, events and failure reason kept and no duplicate provider
job; the planted credentials appear in no database row, worker log line or API response.

Live mode (``-m live``, ``SQSNN_LIVE=1`` plus credentials; see :func:`live_targets`): the same inference
test against real accounts, with the budget the run would spend printed first and enforced as the jobs'
``max_shots``.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import torch
from qpu_jobs import submissions

from backends.execute import conditional_probabilities
from sqsnn.datasets import load_dataset
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.bptt import TrainConfig, train
from tests.twins.braket import ACCOUNT_ID, SECRET_ACCESS_KEY, SIM_ARN, BraketTwin, Fault, TaskPlan
from tests.twins.braket_plugin import BUCKET
from tests.twins.ibm import DEFAULT_CRN, IBMTwin
from tests.twins.ibm import Fault as IBMFault
from tests.twins.ibm import Faults as IBMFaults
from workers.artifacts import finalize, model_path
from workers.models import HardwareSubmission, Model
from workers.routing import credentials_configured
from workers.spikes import unpack

pytestmark = pytest.mark.service

PLANTED_IBM_KEY = "planted-ibm-key-" + "7f3c9e21d4b8a6f0"  # the twin's only valid API key; must never show
PLANTED = (PLANTED_IBM_KEY, SECRET_ACCESS_KEY, DEFAULT_CRN)
SIZES = [64, 12, 10]  # digits 8x8 -> 12 -> 10 with direct synapses: two provider submissions per job
T = 4
IBM = "ibm:ibm_twin_algiers"
IBM_OPTIONS = {"neurons_per_circuit": 10}  # 27 qubits: at most 13 neurons per circuit
BRAKET = f"braket:{SIM_ARN}"
BRAKET_OPTIONS = {"s3_bucket": BUCKET, "poll_interval_s": 0.05}
Z_999 = 3.2905  # two-sided 0.1 % normal quantile


# --- the model -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained() -> SQSNetwork:
    """A digits network trained with BPTT (exact test accuracy about 0.7): seeded, trained in-process."""
    data = load_dataset("digits", val_fraction=0)
    net = SQSNetwork(NetworkConfig(sizes=SIZES, direct=True, seed=0))
    train(net, data, TrainConfig(epochs=6, batch_size=32, T=T, lr=1e-3, seed=0))
    net.eval()
    return net


def store(served: Any, settings: Any, net: SQSNetwork, owner: str) -> str:
    """Store ``net`` as ``owner``'s model (file, checksum, row) as a training job would; returns its id."""
    model_id = str(uuid.uuid4())
    path = model_path(settings.artifacts_dir, model_id)
    tmp = path.with_suffix(".tmp")
    net.save(tmp, encoder={"T": T, "p_max": 0.5})
    sha, size = finalize(tmp, path)
    with served.app.state.sessions() as s:
        s.add(Model(id=model_id, owner=owner, config=net.describe(), metrics={}, path=str(path), sha256=sha,
                    size_bytes=size))  # fmt: skip
        s.commit()
    return model_id


# --- the API, recorded ----------------------------------------------------------------------------------
@dataclass
class Api:
    """An authenticated client of the served API that keeps every response body it received."""

    client: httpx.Client
    seen: list[str] = field(default_factory=list)

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        r = self.client.request(method, url, **kwargs)
        self.seen.append(r.text)
        return r

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/jobs/{job_id}").json())

    def submit(self, model_id: str, backend: str, options: dict[str, Any] | None, n: int, **extra: Any) -> str:
        body = {
            "kind": "infer", "model_id": model_id, "backend": backend, "options": options, "seed": 7,
            "inputs": {"source": "dataset", "name": "digits", "start": 0, "stop": n}, **extra,
        }  # fmt: skip
        r = self.call("POST", "/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def events(self, job_id: str, timeout: float = 240) -> list[dict[str, Any]]:
        """Every SSE event of the job, read live until the stream ends (the job finished)."""
        from sqsnn.client import parse_sse

        lines: list[str] = []
        deadline = time.monotonic() + timeout
        with self.client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                lines.append(line)
                assert time.monotonic() < deadline, f"SSE of {job_id} still open after {timeout} s"
        self.seen.append("\n".join(lines))
        return [{"id": i, "event": kind, "data": json.loads(data)} for i, kind, data in parse_sse([*lines, ""])]

    def wait(self, job_id: str, states: tuple[str, ...], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["state"] not in states:
            assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s"
            time.sleep(0.2)
        return job


@dataclass
class Stack:
    """The twins, a worker started with their environment, a model and an API client of its owner."""

    ibm: IBMTwin
    braket: BraketTwin
    api: Api
    model_id: str
    net: SQSNetwork
    worker_log: Path
    sessions: Any

    def reset(self) -> None:
        """Undo the previous test's scripting (jobs, tasks and counters stay)."""
        self.ibm.faults = IBMFaults()
        self.ibm.revoked = False
        self.ibm.retired.clear()
        for name in self.ibm.backends:
            self.ibm.set_status(name, state=True, status="active")
        self.braket.reset()

    def submissions(self, job_id: str) -> list[HardwareSubmission]:
        return submissions(self.sessions, job_id)


@pytest.fixture(scope="module")
def stack(served, settings, trained, braket_twin_module, tmp_path_factory) -> Iterator[Stack]:
    from conftest import WorkerProcess

    ibm = IBMTwin(api_key=PLANTED_IBM_KEY).start()
    log = tmp_path_factory.mktemp("twins") / "worker.log"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ibm.env().items():  # the braket fixture already pointed the environment at its twin
            mp.setenv(name, value)
        worker = WorkerProcess(settings, log, "twins", beat=True)  # inherits this environment
        owner = f"twins-{uuid.uuid4().hex[:6]}"
        model_id = store(served, settings, trained, owner)
        key = served.key(owner)
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            yield Stack(ibm, braket_twin_module, Api(c), model_id, trained, log, served.app.state.sessions)
        worker.stop()
    ibm.stop()


@pytest.fixture
def twins(stack: Stack) -> Iterator[Stack]:
    stack.reset()
    yield stack
    stack.reset()


# --- statistics -----------------------------------------------------------------------------------------
def accuracy_bound(a: float, b: float, n: int) -> float:
    """Half-width of the 99.9 % acceptance region of ``a - b`` for two accuracies over ``n`` images each
    under equal success probability (pooled two-proportion z-test)."""
    p = (a + b) / 2
    return Z_999 * math.sqrt(max(p * (1 - p), 1.0 / n) * 2 / n)


def calibration_z(net: SQSNetwork, x: torch.Tensor, spikes: list[torch.Tensor]) -> list[float]:
    """Per layer: z-score of the observed spike count against the sum of the exact conditional
    probabilities p(s_t = 1 | observed past) of every (step, sample, neuron); N(0, 1) when the observed spikes
    are samples of the model."""
    out, h = [], x
    with torch.no_grad():
        for layer, s in zip(net.layers, spikes, strict=True):
            z = layer.currents(h, x if layer.direct_weight is not None else None)
            p = conditional_probabilities(z, layer.params(), net.config.mode, s)
            out.append(float((s.sum() - p.sum()) / torch.sqrt((p * (1 - p)).sum())))
            h = s
    return out


# --- happy path: results, SSE, statistics ----------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    backend: str
    options: dict[str, Any]
    images: int


TWIN_TARGETS = {
    "ibm-twin": Target(IBM, IBM_OPTIONS, 120),
    "braket-twin": Target(BRAKET, BRAKET_OPTIONS, 12),  # the twin simulates every program-set executable
}


def check_inference(
    api: Api, rows_of: Callable[[str], list[HardwareSubmission]], model_id: str, target: Target,
    net: SQSNetwork | None, budget: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run the exact engine and ``target`` on the same images through the API; check the result and the SSE
    stream and, given ``net`` (an ideal provider), the statistics. Returns the QPU job."""
    extra = {"budget": budget} if budget else {}
    exact_id = api.submit(model_id, "exact", None, target.images)
    job_id = api.submit(model_id, target.backend, target.options, target.images, **extra)
    events = api.events(job_id)  # live, until the job ends
    job = api.job(job_id)
    assert job["state"] == "succeeded", job["failure_reason"]
    result = api.call("GET", f"/v1/jobs/{job_id}/result").json()["result"]
    exact = api.wait(exact_id, ("succeeded", "failed"))
    assert exact["state"] == "succeeded", exact["failure_reason"]
    exact_result = api.call("GET", f"/v1/jobs/{exact_id}/result").json()["result"]

    # the stream: estimate, one spikes event per layer equal to the stored result, the final state last
    kinds = [e["event"] for e in events]
    assert kinds.count("estimate") == 1 and events[-1]["event"] == "state"
    assert events[-1]["data"]["state"] == "succeeded"
    spikes = [e["data"] for e in events if e["event"] == "spikes"]
    assert [s["layer"] for s in spikes] == [0, 1]
    assert [s["packed"] for s in spikes] == [layer["samples"] for layer in result["spikes"]["layers"]]
    assert any(e["event"] == "provider" for e in events)
    # one provider submission per layer, every one done, the job's shots their sum (single shot per sample)
    rows = rows_of(job_id)
    assert [(r.step, r.status) for r in rows] == [(0, "done"), (1, "done")]
    chunks = sum(math.ceil(n / target.options.get("neurons_per_circuit", 2)) for n in SIZES[1:])
    assert job["shots"] == sum(r.shots for r in rows) == target.images * chunks
    assert result["backend"] == target.backend and len(result["predictions"]) == target.images
    assert result["labels"] == exact_result["labels"]
    a, b, n = result["accuracy"], exact_result["accuracy"], target.images
    print(f"{target.backend}: accuracy {a:.3f}, exact engine {b:.3f}, {n} images")
    if net is None:
        return job

    # statistics: the provider's spikes are samples of the exact model ...
    x = torch.as_tensor(unpack(rows[0].payload["x"], T, SIZES[0]), dtype=torch.float64)
    observed = [
        torch.as_tensor(unpack(layer["samples"], T, n), dtype=torch.float64)
        for layer, n in zip(result["spikes"]["layers"], SIZES[1:], strict=True)
    ]
    zs = calibration_z(net, x, observed)
    assert all(abs(z) < 4.0 for z in zs), zs  # |z| >= 4: p < 7e-5 per layer
    # ... and the accuracy is the exact engine's on the same images
    assert abs(a - b) <= accuracy_bound(a, b, n), (a, b, accuracy_bound(a, b, n))
    print(f"  accuracy bound ±{accuracy_bound(a, b, n):.3f}, calibration z per layer {[round(z, 2) for z in zs]}")
    return job


@pytest.mark.parametrize("name", list(TWIN_TARGETS))
def test_inference_through_the_twin_matches_the_exact_engine(twins: Stack, name: str) -> None:
    target = TWIN_TARGETS[name]
    ibm_before, braket_before = len(twins.ibm.jobs), twins.braket.create_calls
    job = check_inference(twins.api, twins.submissions, twins.model_id, target, twins.net)
    rows = twins.submissions(job["id"])
    if name == "ibm-twin":
        created = list(twins.ibm.jobs.values())[ibm_before:]
        assert [j.status for j in created] == ["Completed", "Completed"]  # one IBM job per layer, no duplicate
        session = twins.ibm.sessions[rows[0].session_id]
        assert {j.session_id for j in created} == {session.id}  # both layers in one session, closed after the job
        _wait_until(lambda: not session.accepting_jobs, 20, "session closed")
        assert [h["usage_seconds"] for h in job["hardware"]] == [j.qpu_seconds for j in created]
    else:
        tasks = [
            t
            for t in twins.braket.tasks.values()
            if t.tags.get("sqsnn-submission", "").startswith("sqsnn/" + job["id"])
        ]
        assert {t.status for t in tasks} == {"COMPLETED"} and tasks
        assert twins.braket.create_calls - braket_before == len(tasks)  # one create call per task
        assert all(t.action_type == "braket.ir.openqasm.program_set" for t in tasks)
        executables = sum(t.executables for t in tasks)
        assert executables == target.images * sum(math.ceil(n / 2) for n in SIZES[1:])
        assert len(tasks) == sum(math.ceil(target.images * math.ceil(n / 2) / 100) for n in SIZES[1:])


# --- cancel mid-queue ------------------------------------------------------------------------------------
def _events_of(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    return stack.api.events(job_id, timeout=30)  # the job is final: the stream replays and ends


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not {what} after {timeout} s"
        time.sleep(0.2)


@pytest.mark.parametrize("provider", ["ibm", "braket"])
def test_cancel_mid_queue_cancels_the_provider_job(twins: Stack, provider: str) -> None:
    if provider == "ibm":
        twins.ibm.faults.queue_delay_s = 600
        backend, options = IBM, IBM_OPTIONS
    else:
        twins.braket.hold = True
        backend, options = BRAKET, BRAKET_OPTIONS
    ibm_before, tasks_before = len(twins.ibm.jobs), set(twins.braket.tasks)
    job_id = twins.api.submit(twins.model_id, backend, options, 3)
    _wait_until(lambda: [r.status for r in twins.submissions(job_id)] == ["queued"], 90, "queued at the provider")
    r = twins.api.call("POST", f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202, r.text
    job = twins.api.wait(job_id, ("succeeded", "failed", "cancelled"), timeout=60)
    assert job["state"] == "cancelled" and "owner" in job["failure_reason"]
    rows = twins.submissions(job_id)
    assert [(x.step, x.status) for x in rows] == [(0, "cancelled")]  # no later layer was submitted
    if provider == "ibm":
        created = list(twins.ibm.jobs.values())[ibm_before:]
        assert [(j.id, j.status) for j in created] == [(rows[0].provider_job_id, "Cancelled")]
        session = twins.ibm.sessions[rows[0].session_id]
        _wait_until(lambda: not session.accepting_jobs, 20, "session closed")
    else:
        created = [t for arn, t in twins.braket.tasks.items() if arn not in tasks_before]
        assert created and {t.status for t in created} == {"CANCELLED"}
    kinds = [(e["event"], e["data"].get("state")) for e in _events_of(twins, job_id)]
    assert ("queue", None) in kinds and ("cancel", None) in kinds and kinds[-1] == ("state", "cancelled")


# --- scripted faults -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultCase:
    """``arrange`` scripts the twin before the job; the job must end ``state`` with every ``reason`` part in
    its failure reason; ``at_start``: refused before any provider job exists; ``retried``: sqsnn itself (not
    only the client) retried a provider call (None: either; the IBM client retries some calls itself, depending on
    timing); ``during`` acts on the twin while the job runs."""

    provider: str
    arrange: Callable[[Stack], Any]
    state: str
    reason: tuple[str, ...] = ()
    at_start: bool = False
    retried: bool | None = False
    during: Callable[[Stack, str], None] | None = None


def _publish_after_a_retry(stack: Stack, job_id: str) -> None:
    """Results missing from S3: wait until sqsnn retried the fetch, then let the twin write them."""
    _wait_until(lambda: any(r.attempts > 0 for r in stack.submissions(job_id)), 60, "retried")
    stack.braket.publish_results()


def _created_twice(stack: Stack) -> None:
    """The first POST /jobs creates the job but answers 502; the client's retry creates a second one, which
    sqsnn cancels while both still queue (a duplicate that already ran cannot be cancelled)."""
    stack.ibm.faults.add(IBMFault("POST", r"/api/v1/jobs", 502, after=True))
    stack.ibm.faults.queue_delay_s = 5.0


FAULTS = {
    "ibm-job-failed": FaultCase(
        "ibm",
        lambda t: setattr(t.ibm.faults, "job_failure", "qubit 4 lost calibration (twin)"),
        "failed",
        ("layer 0", "qubit 4 lost calibration (twin)"),
    ),
    "ibm-provider-cancelled": FaultCase(
        "ibm",
        lambda t: setattr(t.ibm.faults, "provider_cancel", "system maintenance (twin)"),
        "failed",
        ("layer 0", "was cancelled"),  # the client gives no public access to IBM's cancel reason
    ),
    "ibm-429": FaultCase(
        "ibm", lambda t: t.ibm.faults.add(IBMFault("POST", r"/api/v1/jobs", 429, times=2)), "succeeded", retried=None
    ),
    "ibm-5xx-after-create": FaultCase(
        "ibm",
        _created_twice,
        "succeeded",
        retried=None,
    ),
    "ibm-dropped-poll": FaultCase(
        "ibm",
        lambda t: t.ibm.faults.add(IBMFault("GET", r"/api/v1/jobs/[^/]+", None, times=3)),
        "succeeded",
        retried=None,
    ),
    "ibm-bad-credentials": FaultCase("ibm", lambda t: t.ibm.revoke_key(), "failed", ("QISKIT_IBM_TOKEN",), True),
    "ibm-retired": FaultCase("ibm", lambda t: t.ibm.retire("ibm_twin_algiers"), "failed", ("unavailable",), True),
    "ibm-maintenance": FaultCase(
        "ibm",
        lambda t: t.ibm.set_status("ibm_twin_algiers", state=False, status="maintenance"),
        "failed",
        ("not operational", "maintenance"),
        True,
    ),
    "braket-task-failed": FaultCase(
        "braket",
        lambda t: t.braket.plan(TaskPlan("failed", "qubit 2 lost calibration (twin)")),
        "failed",
        ("layer 0", "FAILED", "qubit 2 lost calibration (twin)"),
    ),
    "braket-provider-cancelled": FaultCase(
        "braket", lambda t: t.braket.plan(TaskPlan("cancelled")), "failed", ("layer 0", "CANCELLED")
    ),
    "braket-throttled": FaultCase(
        "braket", lambda t: t.braket.faults.append(Fault("CreateQuantumTask", "throttle", 3)), "succeeded", retried=True
    ),
    "braket-5xx": FaultCase(
        "braket",
        lambda t: t.braket.faults.append(Fault("GetQuantumTask", "server_error", 3)),
        "succeeded",
        retried=True,
    ),
    "braket-dropped-create": FaultCase(
        "braket", lambda t: t.braket.faults.append(Fault("CreateQuantumTask", "drop_after", 1)), "succeeded"
    ),
    "braket-bad-credentials": FaultCase(
        "braket",
        lambda t: t.braket.faults.append(Fault("CreateQuantumTask", "bad_credentials", 50)),
        "failed",
        ("UnrecognizedClientException", "AWS credentials"),
    ),
    "braket-result-missing": FaultCase(
        "braket",
        lambda t: t.braket.plan(TaskPlan("result_missing")),
        "succeeded",
        retried=True,
        during=_publish_after_a_retry,
    ),
    "braket-offline": FaultCase(
        "braket", lambda t: t.braket.set_status(SIM_ARN, "OFFLINE"), "failed", ("unavailable", "OFFLINE"), True
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_ends_in_its_documented_state(twins: Stack, name: str) -> None:
    case = FAULTS[name]
    backend, options = (IBM, IBM_OPTIONS) if case.provider == "ibm" else (BRAKET, BRAKET_OPTIONS)
    ibm_before, tasks_before, creates_before = len(twins.ibm.jobs), set(twins.braket.tasks), twins.braket.create_calls
    case.arrange(twins)
    braket_faults = [(fault, fault.times) for fault in twins.braket.faults]
    job_id = twins.api.submit(twins.model_id, backend, options, 3)
    if case.during is not None:
        case.during(twins, job_id)
    job = twins.api.wait(job_id, ("succeeded", "failed", "cancelled"), timeout=120)
    events = _events_of(twins, job_id)
    rows = twins.submissions(job_id)

    # the scripted fault did fire
    assert all(fault.hits > 0 for fault in twins.ibm.faults.http)
    assert all(fault.times < times for fault, times in braket_faults) and not twins.braket.plans
    # the documented state, the reason kept on the row and in the last event, nothing left open
    assert job["state"] == case.state, job["failure_reason"]
    assert events[-1]["event"] == "state" and events[-1]["data"]["state"] == case.state
    if case.state == "failed":
        assert all(part in job["failure_reason"] for part in case.reason), job["failure_reason"]
        assert events[-1]["data"]["reason"] == job["failure_reason"]
        assert f":{ACCOUNT_ID}:" not in job["failure_reason"]  # ARNs redacted
    else:
        assert job["failure_reason"] is None
        assert [(x.step, x.status) for x in rows] == [(0, "done"), (1, "done")]
        assert len(twins.api.call("GET", f"/v1/jobs/{job_id}/result").json()["result"]["predictions"]) == 3
    assert all(x.status in ("done", "failed", "cancelled") for x in rows)
    if case.at_start:
        assert rows == [] and "estimate" not in [e["event"] for e in events]
    elif case.state == "failed":
        assert [(x.step, x.status) for x in rows] == [(0, "failed")] and rows[0].last_error == job["failure_reason"]
    retries = [e["data"] for e in events if e["event"] == "provider" and "retry" in e["data"]]
    assert case.retried is None or bool(retries) == case.retried, retries
    assert sum(x.attempts for x in rows) == len(retries)

    # no duplicate provider job: one per layer that ran; extra ones the client's retries made were cancelled
    if case.provider == "ibm":
        created = list(twins.ibm.jobs.values())[ibm_before:]
        kept = [j for j in created if j.status != "Cancelled" or j.reason != "Cancelled by user"]
        assert [j.id for j in kept] == [x.provider_job_id for x in rows]
        assert len(created) <= len(rows) + 1
    else:
        created = [t for arn, t in twins.braket.tasks.items() if arn not in tasks_before]
        ended = {"braket-task-failed": ["FAILED"], "braket-provider-cancelled": ["CANCELLED"]}.get(name, [])
        expected = ["COMPLETED", "COMPLETED"] if case.state == "succeeded" else ended
        assert [t.status for t in created] == expected  # one program-set task per layer (3 images x <= 6 chunks)
        assert len({t.client_token for t in created}) == len(created)
        assert twins.braket.create_calls - creates_before >= len(created)


# --- secrets (runs after the tests above: their rows, logs and responses are what it scans) ---------------
def test_planted_secrets_appear_in_no_row_log_line_or_response(twins: Stack, settings) -> None:
    """Scans what every test of this module left (run alone, its own two failing jobs: a rejected API key and
    a FAILED Braket task, whose provider messages are the likeliest carriers of a secret)."""
    twins.ibm.revoke_key()
    twins.braket.plan(TaskPlan("failed", "device fault (twin)"))
    ibm_job = twins.api.submit(twins.model_id, IBM, IBM_OPTIONS, 3)
    braket_job = twins.api.submit(twins.model_id, BRAKET, BRAKET_OPTIONS, 3)
    for job_id in (ibm_job, braket_job):
        assert twins.api.wait(job_id, ("succeeded", "failed", "cancelled"))["state"] == "failed"
        twins.api.events(job_id, timeout=30)
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    found, scanned = [], 0
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        ).fetchall()
        for table, column in columns:
            values = [v for (v,) in conn.execute(f'SELECT "{column}"::text FROM "{table}"') if v]
            scanned += len(values)
            found += [(table, column, s) for s in PLANTED for v in values if s in v]
    assert scanned > 20 and ("hardware_submissions", "last_error") in [(t, c) for t, c in columns]
    assert found == []
    log = twins.worker_log.read_text(errors="replace")
    assert "advance_submission" in log  # the worker ran QPU jobs
    assert [s for s in PLANTED if s in log] == []
    responses = "\n".join(twins.api.seen)
    assert "failed" in responses and "ibm_twin_algiers" in responses
    assert [s for s in (*PLANTED, f":{ACCOUNT_ID}:") if s in responses] == []


# --- live mode ---------------------------------------------------------------------------------------------
def live_targets() -> dict[str, Target | str]:
    """Real-account targets: a Target, or why it is skipped. ``SQSNN_LIVE=1`` and, per provider, credentials
    the SDK finds plus ``SQSNN_LIVE_IBM_BACKEND`` (e.g. ``ibm_kingston``) / ``SQSNN_LIVE_BRAKET_ARN`` (and
    optionally ``SQSNN_LIVE_BRAKET_BUCKET``); ``SQSNN_LIVE_IMAGES`` images per job (default 8)."""
    images = int(os.environ.get("SQSNN_LIVE_IMAGES", "8"))
    out: dict[str, Target | str] = {}
    for name, kind, var in (
        ("ibm-live", "ibm", "SQSNN_LIVE_IBM_BACKEND"),
        ("braket-live", "braket", "SQSNN_LIVE_BRAKET_ARN"),
    ):
        target = os.environ.get(var)
        if os.environ.get("SQSNN_LIVE") != "1":
            out[name] = "live run not requested (SQSNN_LIVE=1)"
        elif not target or not credentials_configured(kind):
            out[name] = f"no {kind} credentials or no {var}"
        elif kind == "ibm":
            out[name] = Target(f"ibm:{target}", {"neurons_per_circuit": 10}, images)
        else:
            bucket = os.environ.get("SQSNN_LIVE_BRAKET_BUCKET")
            out[name] = Target(f"braket:{target}", {"s3_bucket": bucket} if bucket else {}, images)
    return out


def live_estimate(target: Target) -> Any:
    """``backends.estimate`` of one live job on ``target`` (what ``sqsnn estimate`` prints)."""
    from backends.estimate import estimate_network
    from backends.registry import get_backend

    return estimate_network(SIZES, T, target.images, get_backend(target.backend, target.options))


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory, request) -> Iterator[tuple[Api, str, Path]]:
    """A worker with this process's own environment (real credentials) and the model; prints the budget the
    live jobs would spend before any runs. Skipped (before training or starting anything) without targets."""
    from conftest import WorkerProcess

    targets = [t for t in live_targets().values() if isinstance(t, Target)]
    if not targets:
        pytest.skip("no live target: " + "; ".join(str(t) for t in live_targets().values()))
    if {os.environ.get("QISKIT_IBM_TOKEN"), os.environ.get("AWS_SECRET_ACCESS_KEY")} & set(PLANTED):
        pytest.skip("this session's twins set the environment: run the live tests alone (-m live)")
    served, settings = request.getfixturevalue("served"), request.getfixturevalue("settings")
    trained = request.getfixturevalue("trained")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\nlive budget (backends.estimate, as `sqsnn estimate`), each job capped at its max_shots:")
        for target in targets:
            est = live_estimate(target)
            cost = "no dollar estimate" if est.cost_usd is None else f"${est.cost_usd:.2f}"
            print(f"  {target.backend}: {est.shots} shots, {est.jobs} provider jobs/tasks, {cost}; {est.price_note}")
    log = tmp_path_factory.mktemp("live") / "worker.log"
    worker = WorkerProcess(settings, log, "live", beat=True)
    owner = f"live-{uuid.uuid4().hex[:6]}"
    model_id = store(served, settings, trained, owner)
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key(owner)}"}, timeout=30) as c:
        yield Api(c), model_id, log
    worker.stop()


@pytest.mark.live
@pytest.mark.parametrize("name", ["ibm-live", "braket-live"])
def test_live_inference(live_stack, served, name: str) -> None:
    """The inference test against a real account (no statistics against the exact engine: a real QPU is
    noisy); the estimate's shots are the job's budget."""
    target = live_targets()[name]
    if isinstance(target, str):
        pytest.skip(target)
    api, model_id, log = live_stack
    budget = {"max_shots": live_estimate(target).shots}
    check_inference(api, lambda job_id: submissions(served.app.state.sessions, job_id), model_id, target, None,
                    budget)  # fmt: skip
    secrets = [v for v in (os.environ.get(k) for k in ("QISKIT_IBM_TOKEN", "AWS_SECRET_ACCESS_KEY")) if v]
    assert [s for s in secrets if s in "\n".join(api.seen) or s in log.read_text(errors="replace")] == []
