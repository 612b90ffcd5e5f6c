"""End to end against PostgreSQL, Redis and a real Celery worker: train, stream, infer, cancel."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import numpy as np
import pytest

from workers.spikes import unpack

pytestmark = pytest.mark.service


def read_sse(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Read a whole SSE stream with a real HTTP client; returns the events (id, event, data)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", path, headers=headers or {}, timeout=120) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line == "":
                if "data" in current:
                    events.append(current)
                current = {}
            elif line.startswith(":") or line.startswith("retry:"):
                continue
            else:
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return events


def test_train_stream_model_and_infer(client, worker, train_body, wait_for) -> None:
    r = client.post("/v1/jobs", json=train_body())
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["state"] == "queued"

    events = read_sse(client, f"/v1/jobs/{job_id}/events")
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    states = [e["data"]["state"] for e in events if e["event"] == "state"]
    assert states[0] == "queued" and states[-1] == "succeeded"
    assert "running" in states
    epochs = [e["data"]["epoch"] for e in events if e["event"] == "epoch"]
    assert epochs == [1, 2]
    progress = [(e["data"]["epoch"], e["data"]["batch"]) for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and len(progress) == 2 * 7  # 200 images / batch 32 = 7 batches
    # a client that reconnects with Last-Event-ID gets only what came after
    tail = read_sse(client, f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(ids[-3])})
    assert [int(e["id"]) for e in tail] == ids[-2:]

    job = wait_for(client, job_id, ("succeeded",))
    assert job["progress"] == 1.0 and job["backend_used"] == "exact"
    assert [m["epoch"] for m in job["epochs"]] == [1, 2]
    assert all(0.0 <= m["test_accuracy"] <= 1.0 for m in job["epochs"])
    result = client.get(f"/v1/jobs/{job_id}/result").json()["result"]
    model_id = result["model_id"]
    assert result["test_accuracy"] == job["epochs"][-1]["test_accuracy"]

    model = client.get(f"/v1/models/{model_id}").json()
    assert model["config"]["network"]["sizes"] == [64, 16, 10]
    assert model["job_id"] == job_id
    blob = client.get(f"/v1/models/{model_id}/checkpoint")
    assert blob.status_code == 200
    assert hashlib.sha256(blob.content).hexdigest() == model["sha256"] == blob.headers["x-checksum-sha256"]
    assert model_id in [m["id"] for m in client.get("/v1/models").json()["items"]]

    body = {
        "kind": "infer",
        "model_id": model_id,
        "inputs": {"source": "dataset", "name": "digits", "split": "test", "start": 0, "stop": 40},
        "seed": 3,
    }
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    infer_id = r.json()["id"]
    infer_events = read_sse(client, f"/v1/jobs/{infer_id}/events")
    spikes_events = [e for e in infer_events if e["event"] == "spikes"]
    assert spikes_events and spikes_events[0]["data"]["layer"] == 1
    out = client.get(f"/v1/jobs/{infer_id}/result").json()["result"]
    assert len(out["predictions"]) == 40 and len(out["labels"]) == 40
    assert out["accuracy"] == pytest.approx(np.mean(np.array(out["predictions"]) == np.array(out["labels"])))
    T = out["spikes"]["T"]
    assert T == 4  # the model's training encoder
    hidden, output = out["spikes"]["layers"]
    h = unpack(hidden["samples"], T, hidden["neurons"])
    o = unpack(output["samples"], T, output["neurons"])
    assert h.shape == (4, 40, 16) and o.shape == (4, 40, 10)
    assert set(np.unique(o)) <= {0, 1}
    # the prediction is the output neuron with most spikes (ties broken by probability)
    counts = o.sum(0)
    preds = np.array(out["predictions"])
    assert np.all(counts[np.arange(40), preds] == counts.max(1))
    # streamed spikes are the same as the stored ones
    assert spikes_events[0]["data"]["packed"] == output["samples"][:40]


def test_inline_images_inference_checks_width(client, worker, train_body, wait_for) -> None:
    job_id = client.post("/v1/jobs", json=train_body(training={"epochs": 1})).json()["id"]
    wait_for(client, job_id, ("succeeded",))
    model_id = client.get(f"/v1/jobs/{job_id}/result").json()["result"]["model_id"]
    good = {"kind": "infer", "model_id": model_id, "inputs": {"source": "images", "images": [[0.5] * 64] * 3}}
    bad = {"kind": "infer", "model_id": model_id, "inputs": {"source": "images", "images": [[0.5] * 10]}}
    ok_id = client.post("/v1/jobs", json=good).json()["id"]
    r = client.post("/v1/jobs", json=bad)  # refused at submission, naming the field and the model's width
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "body.inputs.images" and "the model expects 64" in r.json()["message"]
    wait_for(client, ok_id, ("succeeded",))
    assert len(client.get(f"/v1/jobs/{ok_id}/result").json()["result"]["predictions"]) == 3


def test_cancel_running_job(client, worker, train_body, wait_for) -> None:
    body = train_body(training={"epochs": 200, "batch_size": 8}, dataset={"name": "digits", "limit_train": 400})
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    wait_for(client, job_id, ("running",))
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    job = wait_for(client, job_id, ("cancelled",), timeout=30)
    assert job["failure_reason"] == "cancelled by its owner"
    assert len(job["epochs"]) < 200
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
    assert client.get(f"/v1/jobs/{job_id}/result").status_code == 409


def test_local_rule_training_job(client, worker, train_body, wait_for) -> None:
    body = train_body(
        model={"hidden": [8]},
        dataset={"name": "digits", "limit_train": 64, "limit_test": 50},
        training={"method": "local", "estimator": "chain", "epochs": 2, "batch_size": 16, "lr": 0.05, "eval_runs": 3},
    )
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    job = wait_for(client, job_id, ("succeeded", "failed"))
    assert job["state"] == "succeeded", job["failure_reason"]
    assert [m["epoch"] for m in job["epochs"]] == [1, 2]
    from workers.schemas.requests import TrainJobSpec
    from workers.training import _trainer

    assert _trainer(TrainJobSpec.model_validate(body))[1].eval_runs == 3  # the trainer evaluates 3 runs
    r = client.post("/v1/jobs", json=train_body(training={"eval_runs": 0}))
    assert r.status_code == 422 and r.json()["field"] == "body.train.training.eval_runs", r.text
    model_id = client.get(f"/v1/jobs/{job_id}/result").json()["result"]["model_id"]
    assert client.get(f"/v1/models/{model_id}").json()["config"]["training"]["estimator"] == "chain"


def test_a_redelivered_task_leaves_a_live_cancelled_job_to_its_worker(client, served, settings, train_body) -> None:
    """A second delivery of a running job's task (broker redelivery, the reaper) must not end it while another
    worker holds a live lease: that worker sees the cancel request. Once the lease lapses (the worker died),
    the claim ends it as cancelled by its owner, since it had started."""
    from datetime import timedelta

    from workers.context import claim
    from workers.models import Job, utcnow

    job_id = client.post("/v1/jobs", json=train_body()).json()["id"]
    sessions = served.app.state.sessions
    with sessions() as s:
        job = s.get(Job, job_id)
        job.state, job.lease_owner, job.cancel_requested = "running", "elsewhere:1:task", True
        job.lease_expires_at = utcnow() + timedelta(seconds=60)
        s.commit()
    assert not claim(settings, job_id, "here:2:task")
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"

    with sessions() as s:
        s.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    assert not claim(settings, job_id, "here:2:task")
    job_view = client.get(f"/v1/jobs/{job_id}").json()
    assert (job_view["state"], job_view["failure_reason"]) == ("cancelled", "cancelled by its owner")
