"""Circuit backends: inference on a simulator backend through a worker, and the submit-then-poll path of
remote QPUs driven by the poller, exercised with IBM Runtime's local testing mode (a fake device)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sqlalchemy import select

from workers.context import JobContext, claim
from workers.hardware import poll_open_submissions, start_hardware
from workers.models import HardwareSubmission, Job, JobEvent
from workers.specs import InferJobSpec
from workers.spikes import unpack

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def trained_model(served, worker) -> tuple[str, str]:
    """(api key, model id) of a tiny trained digits model."""
    import httpx
    from conftest import make_train_body, wait_for_state

    key = served.key("hw-owner")
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        job_id = c.post("/v1/jobs", json=make_train_body(model={"hidden": [6]}, training={"epochs": 1})).json()["id"]
        wait_for_state(c, job_id, ("succeeded",))
        return key, c.get(f"/v1/jobs/{job_id}/result").json()["result"]["model_id"]


def infer_body(model_id: str, backend: str, n: int = 4) -> dict:
    return {
        "kind": "infer",
        "model_id": model_id,
        "inputs": {"source": "dataset", "name": "digits", "start": 0, "stop": n},
        "backend": backend,
        "seed": 5,
    }


def test_inference_on_aer_through_the_worker(served, trained_model, wait_for) -> None:
    import httpx

    key, model_id = trained_model
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/v1/jobs", json=infer_body(model_id, "aer"))
        assert r.status_code == 202, r.text
        job = wait_for(c, r.json()["id"], ("succeeded", "failed"))
        assert job["state"] == "succeeded", job["failure_reason"]
        assert job["backend_used"] == "aer"
        assert [h["backend"] for h in job["hardware"]] == ["aer", "aer"]  # one provider job per layer
        assert job["shots"] == sum(h["shots"] for h in job["hardware"]) > 0
        result = c.get(f"/v1/jobs/{job['id']}/result").json()["result"]
        out = result["spikes"]["layers"][-1]
        assert unpack(out["samples"], result["spikes"]["T"], 10).shape == (4, 4, 10)
        assert len(result["predictions"]) == 4


def test_training_on_a_circuit_backend_is_refused_with_the_field(served, trained_model, train_body) -> None:
    import httpx

    key, _ = trained_model
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/v1/jobs", json=train_body(backend="aer"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "backend"]
        r = c.post("/v1/jobs", json=infer_body(trained_model[1], "ibm"))
        assert r.status_code == 422 and "needs a target" in r.json()["detail"][0]["msg"]


def test_submit_then_poll_advances_layer_by_layer(served, settings, trained_model) -> None:
    import httpx

    key, model_id = trained_model
    sessions = served.app.state.sessions
    # the row a submission stores; not enqueued, so the test plays the hardware-queue worker itself
    spec = InferJobSpec.model_validate(infer_body(model_id, "ibm-local:fake_kingston", n=3))
    with sessions() as s:
        job = Job(
            owner="hw-owner", kind="infer", spec=spec.model_dump(mode="json"), backend=spec.backend,
            queue="sqsnn.hw", request_hash="-", input_model_id=model_id,
        )  # fmt: skip
        s.add(job)
        s.commit()
        job_id = job.id
    # what a hardware-queue worker does: claim, submit the first layer, return without waiting
    assert claim(settings, job_id, "test-worker")
    start_hardware(JobContext(settings, job_id, "test-worker"))
    with sessions() as s:
        subs = list(s.scalars(select(HardwareSubmission).where(HardwareSubmission.job_id == job_id)))
        assert [(x.step, x.status) for x in subs] == [(0, "submitted")]
        assert subs[0].provider_job_id and subs[0].calibration is not None
    job = httpx.get(f"{served.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert job["state"] == "running" and job["substate"] == "waiting_qpu"
    assert not claim(settings, job_id, "another-worker")  # a redelivered task must not submit it again
    # what the periodic poller does, until the job is finished
    deadline = time.monotonic() + 120
    while job["state"] == "running":
        poll_open_submissions(settings)
        job = httpx.get(f"{served.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()
        assert time.monotonic() < deadline
    assert job["state"] == "succeeded", job["failure_reason"]
    assert [(h["provider_job_id"] is not None, h["status"]) for h in job["hardware"]] == [(True, "done")] * 2
    with sessions() as s:
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
    spikes = [e.data["layer"] for e in events if e.kind == "spikes"]
    assert spikes == [0, 1]
    substates = [e.data.get("substate") for e in events if e.kind == "state"]
    assert substates.count("waiting_qpu") == 2
    result = httpx.get(f"{served.url}/v1/jobs/{job_id}/result", headers={"Authorization": f"Bearer {key}"}).json()[
        "result"
    ]
    o = unpack(result["spikes"]["layers"][1]["samples"], result["spikes"]["T"], 10)
    counts = o.sum(0)
    assert np.all(counts[np.arange(3), result["predictions"]] == counts.max(1))
    assert len(result["labels"]) == 3
