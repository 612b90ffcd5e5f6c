"""The ``ibm:`` backend through the unmodified qiskit-ibm-runtime client against the IBM Quantum twin."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from test_backends_reference import chi_square_pvalue, train_index

from backends.base import BackendUnavailable, ProviderError
from backends.ibm import IBMRuntimeBackend
from backends.options import IBMOptions, RunPolicy
from backends.redact import redact
from backends.registry import resolve
from sqsnn.neuron import SQSParams, spike_train_distribution
from tests.twins.ibm import DEFAULT_CRN, Fault, IBMTwin, qpu_seconds

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

DEVICE = "ibm_twin_algiers"
JOBS = r"/api/v1/jobs"
JOB = r"/api/v1/jobs/[^/]+"


def backend(**options: object) -> IBMRuntimeBackend:
    return IBMRuntimeBackend(DEVICE, local=False, options=IBMOptions.model_validate(options))


def small_layer(batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.uniform(-0.5, 1.0, size=(2, batch, 2)), rng.uniform(0, 2 * np.pi, size=(3, 2))


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_run_layer_through_twin_matches_exact_engine_and_reads_usage(ibm_twin: IBMTwin) -> None:
    rng = np.random.default_rng(4)
    T, n, shots = 4, 3, 3000
    z = rng.uniform(-0.5, 1.0, size=(T, 1, n))
    ang = rng.uniform(0, 2 * np.pi, size=(3, n))
    be = backend()
    assert be.availability().available and be.capabilities().hardware
    res = be.run_layer(z, ang, shots=shots)
    params = SQSParams(*(torch.tensor(a) for a in ang))
    ref = spike_train_distribution(torch.tensor(z[:, 0]), params, "quantum").numpy()
    idx = train_index(res.spikes[:, 0])
    for k in range(n):
        assert chi_square_pvalue(idx[:, k], ref[:, k]) > 1e-3
    (job,) = ibm_twin.jobs.values()
    assert res.job_ids == [job.id] and job.status == "Completed" and job.program_id == "executor"
    # usage: the billed QPU seconds of the twin's model for 1 bound circuit x 3000 shots, and the metrics
    assert res.qpu_seconds == pytest.approx(qpu_seconds(1, shots))
    assert res.usage is not None and res.usage["usage"]["status"] == "complete"
    snapshot = res.calibration["0:3"]  # type: ignore[index]
    assert snapshot["backend"] == DEVICE and len(snapshot["layout"]) == 2 * n  # calibration from the provider


@pytest.mark.parametrize("mode, ibm_mode", [("session", "dedicated"), ("batch", "batch")])
def test_layers_of_one_job_share_one_session_across_restarts(ibm_twin: IBMTwin, mode: str, ibm_mode: str) -> None:
    z, ang = small_layer()
    first = backend(execution_mode=mode)
    layer1 = first.submit(z, ang, idempotency_key="job-1/layer-1")
    assert layer1.session_id is not None
    second = backend(execution_mode=mode)  # another worker process joins by id
    layer2 = second.submit(z, ang, idempotency_key="job-1/layer-2", session_id=layer1.session_id)
    assert layer2.session_id == layer1.session_id
    (session,) = ibm_twin.sessions.values()
    assert session.id == layer1.session_id and session.mode == ibm_mode
    assert {j.session_id for j in ibm_twin.jobs.values()} == {session.id} and len(ibm_twin.jobs) == 2
    assert second.fetch(layer1).spikes.shape == (2, 2, 1, 2)  # retrieved by id in the other process
    assert first.fetch(layer2).spikes.shape == (2, 2, 1, 2)
    second.close_session(layer1.session_id)
    assert session.state == "closed" and not session.accepting_jobs
    with pytest.raises(ProviderError, match="closed") as closed:
        backend(execution_mode=mode).submit(z, ang, session_id=layer1.session_id)
    assert not closed.value.retryable


def test_cancel_mid_queue_cancels_the_provider_job_and_reports_queue_position(ibm_twin: IBMTwin) -> None:
    ibm_twin.faults.queue_delay_s = 60
    z, ang = small_layer()
    be = backend()
    first = be.submit(z, ang, idempotency_key="a")
    second = be.submit(z, ang, idempotency_key="b", session_id=first.session_id)
    assert be.poll(first) == "queued" and be.poll(second) == "queued"
    q1, q2 = be.queue_info(first), be.queue_info(second)
    assert q1 is not None and q2 is not None and (q1.position, q2.position) == (0, 1)
    assert q1.estimated_start is not None and "queue" in q1.message
    be.cancel(first)
    assert ibm_twin.jobs[first.job_ids[0]].status == "Cancelled"
    assert be.poll(first) == "cancelled"
    assert be.queue_info(second).position == 0  # type: ignore[union-attr]
    be.cancel(first)  # already final: harmless
    backend().cancel(second)  # from another process, by id
    assert ibm_twin.job_states() == ["Cancelled", "Cancelled"]
    with pytest.raises(ProviderError, match="cancelled") as exc:
        be.fetch(first)
    assert not exc.value.retryable


def test_failed_and_provider_cancelled_jobs_end_final_with_the_reason(ibm_twin: IBMTwin) -> None:
    z, ang = small_layer()
    be = backend()
    ibm_twin.faults.job_failure = "Instruction not supported by the control electronics"
    failed = be.submit(z, ang)
    wait_for(lambda: be.poll(failed) != "queued" and be.poll(failed) != "running")
    assert be.poll(failed) == "failed"
    with pytest.raises(ProviderError, match="control electronics") as exc:
        be.fetch(failed)
    assert not exc.value.retryable
    ibm_twin.faults.job_failure = None
    ibm_twin.faults.provider_cancel = "Cancelled by the system administrator"
    cancelled = be.submit(z, ang, session_id=failed.session_id)
    wait_for(lambda: be.poll(cancelled) == "cancelled")
    assert ibm_twin.jobs[cancelled.job_ids[0]].reason == "Cancelled by the system administrator"


def test_throttled_submission_is_retryable_and_creates_no_job(ibm_twin: IBMTwin) -> None:
    ibm_twin.faults.add(Fault("POST", JOBS, status=429))
    z, ang = small_layer()
    be = backend()
    with pytest.raises(ProviderError, match="429") as exc:
        be.submit(z, ang, idempotency_key="k")
    assert exc.value.retryable and not ibm_twin.jobs
    job = be.submit(z, ang, idempotency_key="k")
    assert len(ibm_twin.jobs) == 1 and ibm_twin.submissions == 2 and job.job_ids == list(ibm_twin.jobs)


def test_server_errors_are_retried_by_the_client_without_duplicate_jobs(ibm_twin: IBMTwin) -> None:
    ibm_twin.faults.add(Fault("POST", JOBS, status=502, times=2))
    z, ang = small_layer()
    job = backend().submit(z, ang, idempotency_key="k")
    assert ibm_twin.submissions == 3 and list(ibm_twin.jobs) == job.job_ids


def test_job_created_twice_by_the_clients_post_retry_is_cancelled(ibm_twin: IBMTwin) -> None:
    ibm_twin.faults.add(Fault("POST", JOBS, status=502, after=True))  # created, then a gateway error: retried
    ibm_twin.faults.queue_delay_s = 1.0  # the duplicate is still queued when it is found
    z, ang = small_layer()
    be = backend()
    job = be.submit(z, ang, idempotency_key="job-3/layer-1")
    first, second = ibm_twin.jobs.values()
    assert ibm_twin.submissions == 2 and job.job_ids == [first.id] and second.status == "Cancelled"
    assert backend().submit(z, ang, idempotency_key="job-3/layer-1").job_ids == [first.id]
    assert be.fetch(job).spikes.shape == (2, 2, 1, 2) and len(ibm_twin.jobs) == 2


def test_persistent_unavailability_exhausts_client_retries_as_retryable(ibm_twin: IBMTwin) -> None:
    z, ang = small_layer()
    be = backend()
    job = be.submit(z, ang)
    ibm_twin.faults.add(Fault("GET", JOB, status=503, times=6, retry_after=1))
    with pytest.raises(ProviderError) as exc:
        be.poll(job)
    assert exc.value.retryable and ibm_twin.faults.http[0].hits == 6  # 1 try + the client's 5 retries
    assert be.poll(job) in ("queued", "running", "done")


def test_dropped_response_then_resubmission_with_same_key_creates_no_second_job(ibm_twin: IBMTwin) -> None:
    ibm_twin.faults.add(Fault("POST", JOBS, status=None, after=True))  # job created, response lost
    z, ang = small_layer()
    be = backend()
    with pytest.raises(ProviderError, match="transient") as exc:
        be.submit(z, ang, idempotency_key="job-7/layer-1")
    assert exc.value.retryable and len(ibm_twin.jobs) == 1
    again = backend().submit(z, ang, idempotency_key="job-7/layer-1")  # the caller's retry, fresh process
    (job,) = ibm_twin.jobs.values()
    assert again.job_ids == [job.id] and again.session_id == job.session_id and ibm_twin.submissions == 1
    ibm_twin.faults.add(Fault("GET", JOB, status=None))  # dropped connection while polling
    with pytest.raises(ProviderError) as polled:
        be.poll(again)
    assert polled.value.retryable
    assert be.fetch(again).spikes.shape == (2, 2, 1, 2)


def test_rejected_and_revoked_credentials_are_final(ibm_twin: IBMTwin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QISKIT_IBM_TOKEN", "wrong-key-0000")
    unavailable = backend().availability()
    assert not unavailable.available and "QISKIT_IBM_TOKEN" in unavailable.reason
    with pytest.raises(BackendUnavailable):
        backend().device()
    monkeypatch.setenv("QISKIT_IBM_TOKEN", ibm_twin.api_key)
    z, ang = small_layer()
    be = backend()
    job = be.submit(z, ang)
    ibm_twin.revoke_key()  # the issued token stops being accepted
    with pytest.raises(ProviderError, match="credentials rejected") as exc:
        be.poll(job)
    assert not exc.value.retryable


@pytest.mark.parametrize(
    "fault",
    [Fault("POST", "/identity/token", status=503), Fault("POST", "/global-search/v3/resources/search", status=None)],
    ids=["iam-503", "global-search-dropped"],
)
def test_unreachable_identity_services_at_start_are_retryable(ibm_twin: IBMTwin, fault: Fault) -> None:
    ibm_twin.faults.add(fault)
    with pytest.raises(ProviderError, match="transient") as exc:
        backend().device()
    assert exc.value.retryable and fault.hits == 1
    assert backend().availability().available


def test_backend_in_maintenance_or_retired_is_unavailable(ibm_twin: IBMTwin) -> None:
    be = backend()
    z, ang = small_layer()
    ibm_twin.set_status(DEVICE, state=False, status="maintenance")
    availability = be.availability()
    assert not availability.available and "maintenance" in availability.reason
    with pytest.raises(BackendUnavailable, match="maintenance"):
        resolve(f"ibm:{DEVICE}")
    job = be.submit(z, ang)  # IBM queues jobs while a backend is down; they wait
    time.sleep(0.5)
    assert be.poll(job) == "queued"
    ibm_twin.set_status(DEVICE, state=True, status="active")
    assert be.fetch(job).spikes.shape == (2, 2, 1, 2)
    ibm_twin.retire(DEVICE)
    retired = backend().availability()
    assert not retired.available and "not offered" in retired.reason
    fallback = resolve(f"ibm:{DEVICE}", policy=RunPolicy(fallback="exact"))
    assert fallback.fallback is not None and "not offered" in fallback.fallback.reason


def test_planted_secrets_never_reach_messages_logs_or_results(
    ibm_twin_factory: Callable[..., IBMTwin], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    key = "PLANTED-ibm-api-key-7f3a9c"
    crn = DEFAULT_CRN.replace("0123456789abcdef", "planted0account")
    twin = ibm_twin_factory(api_key=key, crn=crn)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    z, ang = small_layer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        be = backend()
        result = be.run_layer(z, ang)
        texts += [repr(result), repr(result.usage)]
        twin.faults.add(Fault("POST", JOBS, status=429))
        twin.faults.add(Fault("GET", JOB, status=None))
        for attempt in (lambda: be.submit(z, ang), lambda: be.poll(be.submit(z, ang))):
            with pytest.raises(ProviderError) as exc:
                attempt()
            texts.append(str(exc.value))
        monkeypatch.setenv("QISKIT_IBM_TOKEN", key[::-1])  # a wrong key is a secret too
        texts.append(backend().availability().reason)
        monkeypatch.setenv("QISKIT_IBM_TOKEN", key)
        monkeypatch.setenv("QISKIT_IBM_INSTANCE", crn.replace("planted0account", "planted0other"))
        texts.append(backend().availability().reason)
    texts += [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    assert len(texts) > 6
    for text in texts:
        for secret in (key, key[::-1], "planted0account", "planted0other"):
            assert secret not in text


def test_another_process_reaches_the_twin_with_its_env(ibm_twin: IBMTwin) -> None:
    # what a Celery worker started by an end-to-end test gets: twin.env() in its environment
    script = (
        "import numpy as np; from backends.ibm import IBMRuntimeBackend; "
        f"be = IBMRuntimeBackend({DEVICE!r}, local=False); "
        "print(be.run_layer(np.full((2, 1, 1), 0.3), np.ones((3, 1)), shots=7).spikes.shape)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QISKIT_IBM_", "SQSNN_IBM_"))}
    out = subprocess.run(
        [sys.executable, "-c", script], env={**env, **ibm_twin.env()}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(2, 1, 7, 1)" and len(ibm_twin.jobs) == 1


def test_redact_removes_instance_crns() -> None:
    crn = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc123:inst-9::"
    assert "abc123" not in redact(f"no access to the instance {crn}.")


def test_noisy_twin_runs_with_the_snapshot_noise_model(ibm_twin_factory: Callable[..., IBMTwin]) -> None:
    ibm_twin_factory(noisy=True)
    # ideally silent neurons: every spike is a gate/readout error of the I/O qubits (a few percent at most)
    res = backend().run_layer(np.zeros((2, 300, 2)), np.zeros((3, 2)))
    assert 0 < res.spikes.mean() < 0.1


def test_usage_not_yet_final_leaves_qpu_seconds_unknown(ibm_twin: IBMTwin) -> None:
    ibm_twin.faults.usage_delay_s = 60
    z, ang = small_layer()
    res = backend().run_layer(z, ang)
    assert res.qpu_seconds is None and res.usage is not None and res.usage["usage"]["status"] == "pending"


def test_expired_tokens_are_renewed_and_usage_limit_is_final(ibm_twin_factory: Callable[..., IBMTwin]) -> None:
    twin = ibm_twin_factory(token_lifetime_s=2, usage_limit_s=1.0)
    z, ang = small_layer()
    be = backend()
    job = be.submit(z, ang)
    assert be.fetch(job).qpu_seconds == pytest.approx(qpu_seconds(2, 1))
    time.sleep(2.2)  # the access token has expired: the client fetches a new one from IAM
    tokens_before = twin.requests[("POST", "/identity/token")]
    with pytest.raises(ProviderError, match="409") as exc:  # the instance's usage limit is reached
        be.submit(z, ang, session_id=job.session_id)
    assert not exc.value.retryable and len(twin.jobs) == 1
    assert twin.requests[("POST", "/identity/token")] > tokens_before
