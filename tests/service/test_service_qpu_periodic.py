"""Periodic tasks run on their own queue, consumed by the beat worker alone (as compose deploys it): a
simulator worker busy training does not delay the reaper, which starts a QPU job the broker never got."""

from __future__ import annotations

import time

import pytest
from qpu_jobs import infer_spec, store_model, submit, wait_final

from workers.celery_app import HW_QUEUE, PERIODIC_QUEUE, SIM_QUEUE, make_celery

pytestmark = pytest.mark.service


def test_beat_messages_go_to_the_periodic_queue_and_expire_after_one_interval(settings) -> None:
    schedule = make_celery(settings).conf.beat_schedule
    assert {name: e["options"] for name, e in schedule.items()} == {
        "poll-hardware": {"queue": PERIODIC_QUEUE, "expires": settings.hardware_poll_interval_s},
        "reap-stale": {"queue": PERIODIC_QUEUE, "expires": settings.reaper_interval_s},
    }


def test_the_reaper_runs_while_training_fills_the_simulator_worker(
    client, served, settings, start_worker, train_body, wait_for
) -> None:
    start_worker("sim", queues=(SIM_QUEUE,), concurrency=1)
    start_worker("hw", queues=(HW_QUEUE,), concurrency=1)
    body = train_body(
        dataset={"name": "digits", "limit_train": 400, "limit_test": 50}, training={"epochs": 200, "batch_size": 20}
    )
    training = client.post("/v1/jobs", json=body).json()["id"]
    wait_for(client, training, ("running",), timeout=60)

    sessions = served.app.state.sessions
    model_id = store_model(sessions, settings, "periodic-owner")
    # left unsent, as when the broker was down at submission: only the reaper can start it
    job_id = submit(
        sessions, settings, "periodic-owner", infer_spec(model_id, "loopback:q1"), queue=HW_QUEUE, send=False
    )
    start_worker("beat", beat=True, queues=(), concurrency=1)
    started = time.monotonic()
    job = wait_final(sessions, [job_id], timeout=120)[job_id]
    assert job.state == "succeeded", job.failure_reason
    assert client.get(f"/v1/jobs/{training}").json()["state"] == "running", "training must still fill the worker"
    assert time.monotonic() - started < 60
