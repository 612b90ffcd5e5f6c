"""Owner cancel of a QPU job through the provider twins (real qiskit-ibm-runtime / amazon-braket-sdk clients,
a prefork worker): a job whose provider job is running gets that job cancelled, exactly once however often
the owner asks; a job whose submission is still pending (the provider refusing with retryable errors)
ends without any provider job; cancelling a provider job that already ended is harmless (what a worker
killed between the provider's cancel and its own commit does again). The module reuses the twins stack of
test_service_twins.py (its fixtures are imported), with an untrained model."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import test_service_twins as twin_stack
from test_service_twins import BRAKET, BRAKET_OPTIONS, IBM, IBM_OPTIONS, SIZES, Stack

from sqsnn.network import NetworkConfig, SQSNetwork
from tests.twins.braket import Fault
from tests.twins.ibm import Fault as IBMFault

pytestmark = pytest.mark.service

# the twins stack (IBM and Braket twins, a worker in their environment, a stored model, an API client)
stack, twins = twin_stack.stack, twin_stack.twins
TARGETS = {"braket": (BRAKET, BRAKET_OPTIONS), "ibm": (IBM, IBM_OPTIONS)}
WAIT_S = 600  # provider submissions compile circuits: minutes on a loaded 2-core machine


@pytest.fixture(scope="module")
def trained() -> SQSNetwork:
    """The stack's model: an untrained seeded network (cancelling needs a model, not an accurate one)."""
    return SQSNetwork(NetworkConfig(sizes=SIZES, direct=True, seed=0))


def _until(on: Stack, job_id: str, check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            rows = [(r.step, r.status, r.attempts, r.last_error) for r in on.submissions(job_id)]
            job = on.api.job(job_id)
            raise AssertionError(f"not {what} after {timeout} s: job {job['state']} {job['substate']}, rows {rows}")
        time.sleep(0.1)


def _cancel(on: Stack, job_id: str) -> int:
    return on.api.call("POST", f"/v1/jobs/{job_id}/cancel").status_code


@pytest.mark.parametrize("provider", list(TARGETS))
def test_cancel_while_running_cancels_the_provider_job_once(twins: Stack, settings, provider: str) -> None:
    from workers.qpu_backends import backend_instance, options_key
    from workers.qpu_submissions import submitted_job

    backend, options = TARGETS[provider]
    twins.ibm.faults.run_delay_s = 600  # provider jobs stay running until cancelled
    twins.braket.run_delay_s = 600
    ibm_before, tasks_before = len(twins.ibm.jobs), set(twins.braket.tasks)
    job_id = twins.api.submit(twins.model_id, backend, options, 3)
    running = lambda: [r.status for r in twins.submissions(job_id)] == ["running"]  # noqa: E731
    _until(twins, job_id, running, WAIT_S, "running at the provider")
    assert _cancel(twins, job_id) == 202
    assert _cancel(twins, job_id) in (202, 409)  # asked again while cancelling, or once it is cancelled
    job = twins.api.wait(job_id, ("succeeded", "failed", "cancelled"), timeout=WAIT_S)
    assert job["state"] == "cancelled" and "owner" in job["failure_reason"]
    assert _cancel(twins, job_id) == 409  # final: nothing more to cancel
    rows = twins.submissions(job_id)
    assert [(r.step, r.status) for r in rows] == [(0, "cancelled")]  # no later layer was submitted
    if provider == "ibm":
        created = list(twins.ibm.jobs.values())[ibm_before:]
        assert [(j.id, j.status, j.reason) for j in created] == [
            (rows[0].provider_job_id, "Cancelled", "Cancelled by user")
        ]
        assert twins.ibm.requests[("POST", f"/api/v1/jobs/{created[0].id}/cancel")] == 1
    else:
        created = [t for arn, t in twins.braket.tasks.items() if arn not in tasks_before]
        cancelled = lambda: {t.status for t in created} == {"CANCELLED"}  # noqa: E731 (running: CANCELLING first)
        _until(twins, job_id, cancelled, 30, "CANCELLED at the provider")
        assert created and [twins.braket.cancel_calls.get(t.arn) for t in created] == [1] * len(created)
    # a repeated cancel of the ended provider job (a worker killed before committing its first) is harmless
    row = rows[0]
    again = backend_instance(settings, row.backend, options_key(options))
    again.cancel(submitted_job(row))
    if provider == "ibm":
        assert created[0].status == "Cancelled"
    else:
        assert {t.status for t in created} == {"CANCELLED"}


@pytest.mark.parametrize("provider", list(TARGETS))
def test_cancel_while_pending_creates_no_provider_job(twins: Stack, provider: str) -> None:
    backend, options = TARGETS[provider]
    if provider == "ibm":
        twins.ibm.faults.add(IBMFault("POST", r"/api/v1/jobs", 429, times=10_000))
    else:
        twins.braket.faults.append(Fault("CreateQuantumTask", "throttle", 10_000))
    ibm_before, tasks_before = len(twins.ibm.jobs), set(twins.braket.tasks)
    job_id = twins.api.submit(twins.model_id, backend, options, 3)

    def retrying() -> bool:
        rows = twins.submissions(job_id)
        return len(rows) == 1 and rows[0].status == "pending" and rows[0].attempts >= 1

    _until(twins, job_id, retrying, WAIT_S, "pending with a retried submission")
    assert _cancel(twins, job_id) == 202
    job = twins.api.wait(job_id, ("succeeded", "failed", "cancelled"), timeout=WAIT_S)
    assert job["state"] == "cancelled" and "owner" in job["failure_reason"]
    assert [(r.step, r.status, r.provider_job_id) for r in twins.submissions(job_id)] == [(0, "cancelled", None)]
    assert len(twins.ibm.jobs) == ibm_before and set(twins.braket.tasks) == tasks_before
