"""A worker killed with SIGKILL mid-training: the job resumes on another worker from its last checkpoint."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from workers.models import Checkpoint, EpochMetric, JobEvent

pytestmark = pytest.mark.service

EPOCHS = 8


def test_sigkill_mid_training_resumes_from_last_checkpoint(client, served, start_worker, train_body, wait_for) -> None:
    body = train_body(
        dataset={"name": "digits", "limit_train": 300, "limit_test": 100},
        training={"epochs": EPOCHS, "batch_size": 30, "lr": 0.01},
    )
    first = start_worker("a")
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    deadline = time.monotonic() + 120
    while len(client.get(f"/v1/jobs/{job_id}").json()["epochs"]) < 2:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    first.kill()

    sessions = served.app.state.sessions
    with sessions() as s:
        saved = {r.epoch: r.created_at for r in s.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id))}
        last_checkpoint = max(s.scalars(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id)))
    assert 2 <= last_checkpoint < EPOCHS, "the worker must die mid-training"
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"

    start_worker("b", beat=True)  # the reaper re-enqueues once the dead worker's lease expires
    job = wait_for(client, job_id, ("succeeded",), timeout=180)

    assert [m["epoch"] for m in job["epochs"]] == list(range(1, EPOCHS + 1))
    assert job["attempts"] == 2
    with sessions() as s:
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
        after = {r.epoch: r.created_at for r in s.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id))}
    # epochs up to the checkpoint were kept as they were, not recomputed
    for epoch in range(1, last_checkpoint + 1):
        assert after[epoch] == saved[epoch]
    resumed = [e.data for e in events if e.kind == "state" and e.data.get("substate") == "learning"]
    assert [r["resumed_from_epoch"] for r in resumed] == [0, last_checkpoint]
    # after the resume, progress restarts at the first epoch not checkpointed
    resume_event = next(
        e.id for e in events if e.kind == "state" and e.data.get("resumed_from_epoch") == last_checkpoint
    )
    first_progress = next(e.data for e in events if e.kind == "progress" and e.id > resume_event)
    assert first_progress["epoch"] == last_checkpoint + 1 and first_progress["batch"] == 0
    epoch_events = [e.data["epoch"] for e in events if e.kind == "epoch"]
    assert epoch_events[-(EPOCHS - last_checkpoint) :] == list(range(last_checkpoint + 1, EPOCHS + 1))
