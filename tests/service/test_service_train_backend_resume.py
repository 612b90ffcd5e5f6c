"""A worker killed mid-epoch while training on a circuit backend: the job resumes from its last checkpoint and
the budget meter keeps what the dead attempt submitted (its own module: no other worker may take the job)."""

from __future__ import annotations

import time

import pytest
from test_service_train_backend import aer_body

from workers.schemas.requests import TrainJobSpec
from workers.training import estimate_training_job

pytestmark = pytest.mark.service


def test_sigkill_mid_epoch_resumes_and_keeps_the_dead_attempts_spend(client, served, start_worker, wait_for) -> None:
    """The worker dies after the epoch-1 checkpoint and some epoch-2 submissions: the next attempt resumes
    from epoch 1 and its budget meter starts from the shots the dead attempt put on record."""
    epochs = 4
    body = aer_body(
        model={"hidden": [4], "direct": True},
        dataset={"name": "digits", "classes": [0, 1], "limit_train": 64, "limit_test": 20},
        encoder={"T": 3, "p_max": 0.5},
        training={"method": "local", "estimator": "chain", "shots": 8, "epochs": epochs, "batch_size": 16},
    )
    estimate = estimate_training_job(TrainJobSpec.model_validate(body))
    per_epoch = estimate["per_epoch"]["shots"]
    first = start_worker("a")
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    deadline = time.monotonic() + 180
    while True:  # epoch 1 checkpointed and epoch 2 under way
        job = client.get(f"/v1/jobs/{job_id}").json()
        if len(job["epochs"]) == 1 and job["shots"] > per_epoch:
            break
        assert len(job["epochs"]) < 2 and time.monotonic() < deadline, job
        time.sleep(0.02)
    first.kill()
    recorded = client.get(f"/v1/jobs/{job_id}").json()["shots"]
    assert per_epoch < recorded < 2 * per_epoch

    start_worker("b", beat=True)  # the reaper re-enqueues once the dead worker's lease expires
    job = wait_for(client, job_id, ("succeeded", "failed"), timeout=300)
    assert job["state"] == "succeeded" and job["attempts"] == 2, job["failure_reason"]
    result = client.get(f"/v1/jobs/{job_id}/result").json()["result"]
    assert [u["epoch"] for u in result["epochs_usage"]] == list(range(1, epochs + 1))
    evaluation = estimate["evaluation"]["shots"]
    assert job["shots"] == result["shots"] == recorded + (epochs - 1) * per_epoch + evaluation
