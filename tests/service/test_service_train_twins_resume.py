"""A worker killed while a provider job of a training batch waits at the IBM twin: the next attempt resumes
from the last checkpoint and adopts the recorded submissions instead of submitting them again (the twin
counts every job it created). Its own module: no other worker may take the job."""

from __future__ import annotations

import time

import pytest
from test_service_train_twins import IBM, SPEND, Twins, rows_of, twin_body, twins_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.service


def test_killed_mid_training_resumes_without_a_duplicate_provider_job(
    client, served, twins: Twins, start_worker, wait_for
) -> None:
    body = twin_body(
        IBM,
        dataset={"name": "digits", "classes": [0, 1], "limit_train": 32, "limit_test": 20},
        encoder={"T": 3, "p_max": 0.5},
        training={"method": "local", "estimator": "chain", "shots": 8, "epochs": 2, "batch_size": 16},
    )
    estimate = client.post("/v1/estimates", json=body).json()
    created = len(twins.ibm.jobs)
    first = start_worker("a")
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    deadline = time.monotonic() + 1800
    while not client.get(f"/v1/jobs/{job_id}").json()["epochs"]:  # epoch 1 checkpointed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    twins.ibm.faults.queue_delay_s = 8.0  # from now on every IBM job queues 8 s (more than twice the lease)

    def waiting() -> list[int]:
        return [
            r.id for r in rows_of(served, job_id) if r.status == "train_waiting" and "/train/e2/" in r.payload["key"]
        ]

    while not (caught := waiting()):  # an epoch-2 submission recorded and queued at the provider
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()
    before = {r.id: r.provider_job_id for r in rows_of(served, job_id)}

    start_worker("b", beat=True)  # the reaper re-enqueues the job once the dead worker's lease expires
    job = wait_for(client, job_id, ("succeeded", "failed"), timeout=1800)
    twins.ibm.faults.queue_delay_s = 0.0
    assert job["state"] == "succeeded", job["failure_reason"]
    assert job["attempts"] >= 2
    result = client.get(f"/v1/jobs/{job_id}/result").json()["result"]
    rows = rows_of(served, job_id)
    jobs = list(twins.ibm.jobs.values())[created:]
    # exactly one provider job per submission the run needed: the dead attempt's are adopted, not repeated
    assert len(jobs) == len(rows) == result["provider_submissions"] == estimate["total"]["submissions"]
    assert sorted(j.id for j in jobs) == sorted(r.provider_job_id for r in rows)
    assert {r.status for r in rows} == {"done"}
    assert all(r.provider_job_id == before[r.id] for r in rows if r.id in before and before[r.id] is not None)
    assert caught[0] in {r.id for r in rows} and result["adopted"] >= 1
    # the replayed epoch spends what one epoch costs (adopted submissions counted once, in their epoch)
    assert [{k: u[k] for k in SPEND} for u in result["epochs_usage"]] == [estimate["per_epoch"]] * 2
    assert job["shots"] == sum(r.shots for r in rows) == result["shots"] == estimate["total"]["shots"]
    adopted, attempts = result["adopted"], job["attempts"]
    print(f"\nresumed after SIGKILL: {attempts} attempts, {adopted} submissions adopted, {len(jobs)} IBM jobs")
