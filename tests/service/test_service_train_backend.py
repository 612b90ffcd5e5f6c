"""Training on a circuit backend over REST (PostgreSQL, Redis, a prefork Celery worker): the local rule with
the backend in the loop, per-epoch shots, the budget, and the refusals that say what to use instead (remote
QPUs: tests/service/test_service_train_twins.py)."""

from __future__ import annotations

from typing import Any

import pytest

from workers.schemas.requests import TrainJobSpec
from workers.training import estimate_training_job

pytestmark = pytest.mark.service


def aer_body(**overrides: Any) -> dict[str, Any]:
    """Digits 0 vs 1, 64-8-2 with direct synapses, local rule (chain estimator, 32 shots) on ``aer``: the
    configuration tests/test_backends_training.py uses, chosen on a validation part of the training split."""
    body: dict[str, Any] = {
        "kind": "train",
        "name": "aer-local",
        "model": {"hidden": [8], "direct": True},
        "dataset": {"name": "digits", "classes": [0, 1]},
        "encoder": {"T": 5, "p_max": 0.5},
        "training": {"method": "local", "estimator": "chain", "shots": 32, "epochs": 3, "batch_size": 16, "lr": 0.03},
        "backend": "aer",
        "seed": 0,
    }
    body.update(overrides)
    return body


def test_bptt_and_missing_shots_are_refused_saying_what_to_use(client, train_body) -> None:
    r = client.post("/v1/jobs", json=train_body(backend="aer-noisy:fake_kingston"))
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "train", "backend"]
    assert "backpropagat" in detail["msg"] and "'local'" in detail["msg"]
    r = client.post("/v1/jobs", json=aer_body(training={"method": "local", "estimator": "shift"}))
    assert r.status_code == 422 and "training.shots must be >= 1" in r.json()["detail"][0]["msg"]


def test_local_training_on_aer_succeeds_with_accuracy_and_per_epoch_shots(client, worker, wait_for) -> None:
    body = aer_body()
    estimate = estimate_training_job(TrainJobSpec.model_validate(body))
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"], ("succeeded", "failed"), timeout=600)
    assert job["state"] == "succeeded", job["failure_reason"]
    assert job["backend_used"] == "aer" and [m["epoch"] for m in job["epochs"]] == [1, 2, 3]
    result = client.get(f"/v1/jobs/{job['id']}/result").json()["result"]
    assert result["test_accuracy"] >= 0.90, job["epochs"]
    assert result["backend_test_accuracy"] >= 0.90  # the trained network measured on aer itself
    evaluation = {k: result["backend_evaluation"][k] for k in ("submissions", "tasks", "shots", "cost_usd")}
    assert evaluation == estimate["evaluation"]
    usage = result["epochs_usage"]
    assert [u["epoch"] for u in usage] == [1, 2, 3]
    for u in usage:  # every epoch spends exactly what the estimate priced
        assert {k: u[k] for k in ("submissions", "tasks", "shots", "cost_usd")} == estimate["per_epoch"]
    assert result["shots"] == job["shots"] == estimate["total"]["shots"]
    assert result["impossible_spikes"] == 0 and result["observed_spikes"] > 0


def test_budget_exhausted_mid_training_stops_with_a_checkpoint_and_the_reason(client, worker, wait_for) -> None:
    body = aer_body(
        model={"hidden": [4], "direct": True},
        dataset={"name": "digits", "classes": [0, 1], "limit_train": 32, "limit_test": 20},
        encoder={"T": 3, "p_max": 0.5},
        training={"method": "local", "estimator": "chain", "shots": 8, "epochs": 3, "batch_size": 16},
    )
    per_epoch = estimate_training_job(TrainJobSpec.model_validate(body))["per_epoch"]["shots"]
    body["budget"] = {"max_shots": per_epoch * 3 // 2}  # one and a half epochs
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"], ("succeeded", "failed"), timeout=300)
    assert job["state"] == "failed"
    reason = job["failure_reason"]
    assert reason.startswith("budget exhausted: budget max_shots=") and "the newest checkpoint is epoch 1" in reason
    assert [m["epoch"] for m in job["epochs"]] == [1]
    assert per_epoch < job["shots"] <= per_epoch * 3 // 2

    body["budget"] = {"max_shots": per_epoch // 2}  # not even one epoch: refused at submission, nothing stored
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422 and r.json()["field"] == "body.budget", r.text
    assert "cannot pay for one epoch" in r.json()["message"]
