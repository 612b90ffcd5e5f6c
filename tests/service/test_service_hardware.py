"""Circuit backends: inference on a simulator backend through a worker, robust readout on a noisy one
(outcomes the ideal model forbids are counted), and the QPU state machine's path exercised with IBM Runtime's
local testing mode (a fake device)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from qpu_jobs import store_model
from sqlalchemy import select

from sqsnn.network import NetworkConfig, SQSNetwork
from workers.models import HardwareSubmission, JobEvent
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


def test_a_backend_without_its_target_is_refused_with_the_field(served, trained_model) -> None:
    import httpx

    key, model_id = trained_model
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/v1/jobs", json=infer_body(model_id, "ibm"))
        assert r.status_code == 422 and "needs a target" in r.json()["detail"][0]["msg"]


def test_ibm_local_runs_layer_by_layer_through_the_qpu_state_machine(served, settings, trained_model, wait_for) -> None:
    """ibm-local is listed in SQSNN_QPU_BACKENDS here: its layers go through workers.hardware's state machine
    (submit and fetch in one transition, as for every in-process backend, then the next layer), on a
    prefork worker whose two processes take turns."""
    import httpx

    key, model_id = trained_model
    sessions = served.app.state.sessions
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.post("/v1/jobs", json=infer_body(model_id, "ibm-local:fake_kingston", n=3))
        assert r.status_code == 202, r.text
        job = wait_for(c, r.json()["id"], ("succeeded", "failed"), timeout=180)
        assert job["state"] == "succeeded", job["failure_reason"]
        result = c.get(f"/v1/jobs/{job['id']}/result").json()["result"]
    job_id = job["id"]
    with sessions() as s:
        subs = list(s.scalars(select(HardwareSubmission).where(HardwareSubmission.job_id == job_id)))
        events = list(s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
    assert sorted((x.step, x.status) for x in subs) == [(0, "done"), (1, "done")]
    assert all(x.provider_job_id and x.calibration is not None and x.result is not None for x in subs)
    assert job["shots"] == 2 * 3 == sum(x.shots for x in subs)
    assert [e.data["layer"] for e in events if e.kind == "spikes"] == [0, 1]
    substates = [e.data.get("substate") for e in events if e.kind == "state"]
    assert substates.count("waiting_qpu") == 1 and substates[-1] is None
    assert [e.data["backend"] for e in events if e.kind == "estimate"] == ["ibm-local:fake_kingston"]
    # the stored result decodes to the spikes the layers returned, and predictions follow the counts
    o = unpack(result["spikes"]["layers"][1]["samples"], result["spikes"]["T"], 10)
    last = next(x for x in subs if x.step == 1)
    assert np.array_equal(o, unpack(last.result["spikes"], result["spikes"]["T"], 10))
    counts = o.sum(0)
    assert np.all(counts[np.arange(3), result["predictions"]] == counts.max(1))
    assert len(result["labels"]) == 3
    # robust readout on the state machine's path too: every outcome replayed, the tally in the result and event
    assert result["observed_spikes"] == 3 * result["spikes"]["T"] * (6 + 10) and result["impossible_spikes"] >= 0
    readout = [e.data for e in events if e.kind == "readout"]
    assert readout == [{key: result[key] for key in ("impossible_spikes", "observed_spikes")}]


def _dead_hidden_layer() -> SQSNetwork:
    """A 64-24-10 digits network (direct synapses) whose hidden neurons can never spike under the ideal
    model: zero input weights and bias (current 0, embedding angle 0) and theta_in = theta_ent = 0, so
    p(spike) = 0 exactly at every step whatever the memory; any hidden spike a backend reports is impossible."""
    net = SQSNetwork(NetworkConfig(sizes=[64, 24, 10], direct=True, seed=4))
    hidden = net.layers[0]
    with torch.no_grad():
        for tensor in (hidden.weight, hidden.bias, hidden.theta_in, hidden.theta_ent):
            if tensor is not None:
                tensor.zero_()
    return net


@pytest.mark.parametrize("backend", ["aer", "aer-noisy:fake_kingston"])
def test_inference_counts_outcomes_the_ideal_model_forbids(served, settings, worker, wait_for, backend) -> None:
    """10 images at T = 20: 4,800 hidden outcomes of probability 0. The ideal simulator never reports a hidden
    spike; the noisy one does through readout and gate errors (0.25 % per outcome measured on this device
    model, so about 12 expected: none at all has probability e^-12 ~ 6e-6), and every one is counted, with
    finite probabilities and predictions (the readout follows the opposite outcome)."""
    import httpx

    owner = f"readout-{uuid.uuid4().hex[:6]}"
    model_id = store_model(served.app.state.sessions, settings, owner, _dead_hidden_layer())
    body = {**infer_body(model_id, backend, n=10), "encoder": {"T": 20, "p_max": 0.5}}
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key(owner)}"}) as c:
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job = wait_for(c, r.json()["id"], ("succeeded", "failed"), timeout=300)
        assert job["state"] == "succeeded", job["failure_reason"]
        result = c.get(f"/v1/jobs/{job['id']}/result").json()["result"]
    hidden = unpack(result["spikes"]["layers"][0]["samples"], 20, 24)
    assert result["observed_spikes"] == 10 * 20 * (24 + 10)
    if backend == "aer":
        assert hidden.sum() == 0 and result["impossible_spikes"] == 0
    else:
        assert result["impossible_spikes"] >= int(hidden.sum()) > 0  # every hidden spike, and any output one
    assert len(result["predictions"]) == 10 and set(result["predictions"]) <= set(range(10))
    with served.app.state.sessions() as s:
        where = (JobEvent.job_id == job["id"]) & (JobEvent.kind == "readout")
        events = [e.data for e in s.scalars(select(JobEvent).where(where))]
    assert events == [{key: result[key] for key in ("impossible_spikes", "observed_spikes")}]
