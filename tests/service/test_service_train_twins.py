"""Local-rule training on a remote QPU over REST, against the provider twins: ``ibm:<twin backend>`` and
``braket:<twin SV1 ARN>`` through the unmodified qiskit-ibm-runtime / amazon-braket-sdk clients, a real
prefork Celery worker, PostgreSQL and Redis. A twin is a simulator behind the providers' HTTP APIs, not
hardware: these tests check the service (records, spend, budget, accuracy on an ideal device), not a QPU.

Checked: the job trains to its accuracy with every forward spike and (IBM) every estimator probability
measured at the provider; each epoch spends what ``POST /v1/estimates`` priced; every provider submission
has exactly one row and one provider job (the twins count what they created); a budget that runs out
mid-training stops the job before the submission that would exceed it, with a checkpoint and the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from qpu_jobs import submissions

from tests.twins.braket import SIM_ARN, BraketTwin
from tests.twins.braket_plugin import BUCKET
from tests.twins.ibm import IBMTwin
from workers.models import HardwareSubmission

pytestmark = pytest.mark.service

IBM = "ibm:ibm_twin_kingston"
BRAKET = f"braket:{SIM_ARN}"
BRAKET_OPTIONS = {"s3_bucket": BUCKET, "poll_interval_s": 0.05}
SPEND = ("submissions", "tasks", "shots", "cost_usd")


def twin_body(backend: str, options: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """Digits 0 vs 1, 64-8-2 with direct synapses, the local rule (chain estimator, 32 shots, lr 0.03, batch 16:
    the simulator tests' configuration, chosen on a validation part of the training split) on 64 training
    images for 3 epochs; ``changes`` replace whole top-level sections."""
    body: dict[str, Any] = {
        "kind": "train",
        "name": "twin-local",
        "model": {"hidden": [8], "direct": True},
        "dataset": {"name": "digits", "classes": [0, 1], "limit_train": 64},
        "encoder": {"T": 5, "p_max": 0.5},
        "training": {"method": "local", "estimator": "chain", "shots": 32, "epochs": 3, "batch_size": 16, "lr": 0.03},
        "backend": backend,
        "options": options,
        "seed": 0,
    }
    body.update(changes)
    return body


@dataclass
class Twins:
    ibm: IBMTwin
    braket: BraketTwin


@pytest.fixture(scope="module", name="twins")
def twins_fixture(braket_twin_module: BraketTwin) -> Iterator[Twins]:
    """An ideal IBM twin and the module's Braket twin, this process's environment pointing at both (so the
    workers started here, and the API's estimates, reach them)."""
    ibm = IBMTwin().start()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ibm.env().items():
            mp.setenv(name, value)
        yield Twins(ibm, braket_twin_module)
    ibm.stop()


@pytest.fixture(scope="module")
def twin_worker(settings: Any, twins: Twins, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from conftest import WorkerProcess

    worker = WorkerProcess(settings, tmp_path_factory.mktemp("train-twins") / "worker.log", "train-twins", True)
    yield worker
    worker.stop()


def rows_of(served: Any, job_id: str) -> list[HardwareSubmission]:
    return submissions(served.app.state.sessions, job_id)


def run_job(client: httpx.Client, body: dict[str, Any], timeout: float) -> tuple[dict[str, Any], float]:
    """Submit ``body``, wait until it ends; the job and the seconds from submission to its end."""
    start = time.monotonic()
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    deadline = start + timeout
    while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s"
        time.sleep(0.2)
    return job, time.monotonic() - start


def check_trained(client: httpx.Client, served: Any, body: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """The job succeeded, each epoch spent what the estimate priced, and every provider submission has one
    row, done; returns the result."""
    assert job["state"] == "succeeded", job["failure_reason"]
    assert job["backend_used"] == body["backend"]
    estimate = client.post("/v1/estimates", json=body).json()
    result = client.get(f"/v1/jobs/{job['id']}/result").json()["result"]
    epochs = body["training"]["epochs"]
    assert [u["epoch"] for u in result["epochs_usage"]] == list(range(1, epochs + 1))
    for u in result["epochs_usage"]:
        assert {k: u[k] for k in SPEND} == estimate["per_epoch"]
    assert {k: result["backend_evaluation"][k] for k in SPEND} == estimate["evaluation"]
    assert {k: result[k] for k in SPEND} == estimate["total"]
    rows = rows_of(served, job["id"])
    # one row per submission the run needed; when the job was taken over (a worker presumed dead: on a loaded
    # machine the lease can lapse before the heartbeat process is up), the last attempt adopted the rows of
    # the earlier one instead of submitting them again
    assert len(rows) == result["provider_submissions"] == estimate["total"]["submissions"]
    assert result["submitted"] + result["adopted"] == len(rows) or job["attempts"] > 1
    assert {r.status for r in rows} == {"done"}
    assert job["shots"] == sum(r.shots for r in rows) == estimate["total"]["shots"]
    assert len({r.idempotency_token for r in rows}) == len(rows)
    return dict(result)


def test_local_training_on_the_ibm_twin(client, served, twins: Twins, twin_worker) -> None:
    """Forward spikes and the chain estimator's probabilities (the p and the six shifted variants, 32 shots)
    measured at the IBM twin: one IBM job per submission, no duplicate, in one batch session."""
    body = twin_body(IBM)
    created = len(twins.ibm.jobs)
    job, wall = run_job(client, body, timeout=3600)
    result = check_trained(client, served, body, job)
    rows = rows_of(served, job["id"])
    jobs = list(twins.ibm.jobs.values())[created:]
    assert sorted(j.id for j in jobs) == sorted(r.provider_job_id for r in rows)
    assert {j.status for j in jobs} == {"Completed"}
    assert len({j.session_id for j in jobs}) == 1  # one IBM batch for the whole training
    assert sum(r.usage_seconds or 0.0 for r in rows) == pytest.approx(sum(j.qpu_seconds or 0.0 for j in jobs))
    print(
        f"\n{IBM}: test accuracy {result['test_accuracy']:.3f} (exact engine), {result['backend_test_accuracy']:.3f} "
        f"(on the twin); {result['shots']} shots, {result['tasks']} tasks, {len(rows)} IBM jobs, {wall:.0f} s"
    )
    assert result["test_accuracy"] >= 0.9 and result["backend_test_accuracy"] >= 0.9


def test_local_training_on_the_braket_twin(client, served, twins: Twins, twin_worker) -> None:
    """Forward spikes from the Braket twin (SV1), one program set per layer and batch, the gradient computed
    classically along them (estimator ``exact``: the twin simulates every executable of a program set one by
    one, so measured probabilities would take minutes per batch). T = 3, 40 test images."""
    body = twin_body(
        BRAKET,
        BRAKET_OPTIONS,
        dataset={"name": "digits", "classes": [0, 1], "limit_train": 64, "limit_test": 40},
        encoder={"T": 3, "p_max": 0.5},
        training={"method": "local", "estimator": "exact", "epochs": 3, "batch_size": 16, "lr": 0.03},
    )
    creates = twins.braket.create_calls
    job, wall = run_job(client, body, timeout=3600)
    result = check_trained(client, served, body, job)
    rows = rows_of(served, job["id"])
    prefix = f"sqsnn/{job['id']}/train/"
    tasks = [t for t in twins.braket.tasks.values() if t.tags.get("sqsnn-submission", "").startswith(prefix)]
    assert len(tasks) == sum(len(r.tags) for r in rows) == result["tasks"]  # every task on record
    assert twins.braket.create_calls - creates == len(tasks)  # one create call per task: nothing submitted twice
    assert {t.status for t in tasks} == {"COMPLETED"}
    print(
        f"\n{BRAKET}: test accuracy {result['test_accuracy']:.3f} (exact engine), "
        f"{result['backend_test_accuracy']:.3f} (on the twin); {result['shots']} shots, {len(tasks)} tasks, "
        f"{wall:.0f} s"
    )
    # The twin's sampling is seeded, so this job reaches the same figure on every run: 0.750 (exact engine),
    # 0.700 (on the twin). The bound is "learned": a chance-level network reaches 28 of 40 with probability
    # 0.8 %. The same job over 20 forward-sampling seeds on the exact backend (a hand-run script) reached
    # 0.87 on average, 0.575-0.975, one of the 20 below 0.7: this seed lies in the lower part of that spread.
    assert result["test_accuracy"] >= 0.7


def test_budget_exhausted_mid_training_on_the_ibm_twin(client, served, twins: Twins, twin_worker) -> None:
    """A shot budget of one and a half epochs: the job stops before the submission that would exceed it, with
    the epoch-1 checkpoint and the reason; nothing was submitted that is not on record."""
    body = twin_body(
        IBM,
        dataset={"name": "digits", "classes": [0, 1], "limit_train": 32, "limit_test": 20},
        encoder={"T": 3, "p_max": 0.5},
        training={"method": "local", "estimator": "chain", "shots": 8, "epochs": 3, "batch_size": 16},
    )
    per_epoch = client.post("/v1/estimates", json=body).json()["per_epoch"]["shots"]
    body["budget"] = {"max_shots": per_epoch * 3 // 2}
    created = len(twins.ibm.jobs)
    job, _ = run_job(client, body, timeout=1800)
    assert job["state"] == "failed"
    reason = job["failure_reason"]
    assert reason.startswith("budget exhausted: budget max_shots=") and "the newest checkpoint is epoch 1" in reason
    assert [m["epoch"] for m in job["epochs"]] == [1]
    rows = rows_of(served, job["id"])
    assert {r.status for r in rows} == {"done"}
    assert per_epoch < job["shots"] == sum(r.shots for r in rows) <= per_epoch * 3 // 2
    assert len(twins.ibm.jobs) - created == len(rows)
