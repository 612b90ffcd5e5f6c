"""Admission at submission: ``POST /v1/jobs`` refuses a job that breaks a memory, time, budget or
daily spend limit with a 422 naming the field and the limit, before anything is stored or enqueued (the
worker's own checks, run at submit; the worker keeps running them, see test_service_qpu_machine.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from qpu_jobs import store_model
from sqlalchemy import func, select

from tests.twins.braket import QPU_ARN
from tests.twins.braket_plugin import BUCKET
from workers.bounds import BASE_BYTES, TRAIN_BASE_BYTES
from workers.models import Job, SpendLimit

pytestmark = pytest.mark.service

OPTIONS = {"s3_bucket": BUCKET, "poll_interval_s": 0.05}
RESERVATION = "arn:aws:braket:us-east-1:123456789012:reservation/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def _body(model_id: str, backend: str, n: int = 3, **extra) -> dict:
    return {
        "kind": "infer", "model_id": model_id, "backend": backend, "seed": 1,
        "inputs": {"source": "dataset", "name": "digits", "start": 0, "stop": n}, **extra,
    }  # fmt: skip


def _owner(served, settings, **limits) -> tuple[httpx.Client, str, str]:
    """(client, owner, model id) of a fresh owner with daily spend ``limits`` (none: unlimited)."""
    owner = f"admit-{uuid.uuid4().hex[:6]}"
    sessions = served.app.state.sessions
    if limits:
        with sessions() as s:
            s.add(SpendLimit(owner=owner, **limits))
            s.commit()
    model_id = store_model(sessions, settings, owner)
    client = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key(owner)}"}, timeout=30)
    return client, owner, model_id


def _jobs_of(served, owner: str) -> int:
    with served.app.state.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Job).where(Job.owner == owner)) or 0)


def _refused(r: httpx.Response, field: str, *named: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["field"] == field, body
    assert all(part in body["message"] for part in named), body["message"]


@pytest.fixture
def braket_qpu(braket_twin, tmp_path, monkeypatch) -> Iterator[str]:
    """``braket:<twin QPU ARN>`` priced $0.30 per task and $0.001 per shot (a price file), with the API's
    backend objects built afresh for this test's twin."""
    from workers.qpu_backends import backend_instance

    prices = tmp_path / "prices.toml"
    prices.write_text(f'as_of = "2030-01-01"\nper_task = 0.3\n[per_shot]\n"{QPU_ARN}" = 0.001\n')
    monkeypatch.setenv("SQSNN_BRAKET_PRICES", str(prices))
    backend_instance.cache_clear()
    yield f"braket:{QPU_ARN}"
    backend_instance.cache_clear()


def _estimate(backend: str, samples: int):
    """What one job on ``samples`` digits images costs on ``backend`` (store_model's 64-6-10 network, T=4)."""
    from backends.estimate import estimate_network
    from backends.registry import get_backend

    return estimate_network([64, 6, 10], 4, samples, get_backend(backend, OPTIONS))


@pytest.mark.parametrize("limit", ["max_shots_per_day", "max_usd_per_day"])
def test_daily_spend_is_reserved_and_checked_at_submit(served, settings, braket_qpu, limit) -> None:
    three, one = _estimate(braket_qpu, 3), _estimate(braket_qpu, 1)
    assert three.shots == 24 and three.cost_usd == pytest.approx(2 * 0.3 + 24 * 0.001)  # 2 program sets
    allowance = {"max_shots_per_day": three.shots + one.shots, "max_usd_per_day": three.cost_usd + one.cost_usd}
    client, owner, model_id = _owner(served, settings, **{limit: allowance[limit]})
    with client:
        first = client.post("/v1/jobs", json=_body(model_id, braket_qpu, options=OPTIONS))
        assert first.status_code == 202, first.text
        with served.app.state.sessions() as s:  # its estimate is reserved at once, before any worker runs it
            job = s.get(Job, first.json()["id"])
            assert job.estimated_shots == three.shots and job.estimated_cost_usd == pytest.approx(three.cost_usd)
        # a second one of 3 images would exceed the day's allowance: refused naming the limit, nothing stored
        r = client.post("/v1/jobs", json=_body(model_id, braket_qpu, options=OPTIONS))
        _refused(r, "body", f"{limit}=", owner)
        assert _jobs_of(served, owner) == 1
        # one image fits what is left exactly
        small = client.post("/v1/jobs", json=_body(model_id, braket_qpu, n=1, options=OPTIONS))
        assert small.status_code == 202, small.text
        for job_id in (first.json()["id"], small.json()["id"]):  # no worker here: leave nothing to run
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202


def test_a_job_over_its_own_budget_is_refused_at_submit(served, settings, braket_qpu) -> None:
    client, owner, model_id = _owner(served, settings)
    with client:
        r = client.post("/v1/jobs", json=_body(model_id, braket_qpu, options=OPTIONS, budget={"max_shots": 23}))
        _refused(r, "body.budget", "estimated 24 shots", "max_shots=23")
        r = client.post("/v1/jobs", json=_body(model_id, braket_qpu, options=OPTIONS, budget={"max_cost_usd": 0.6}))
        _refused(r, "body.budget", "$0.62", "max_cost_usd=0.6")
        # a device that does not exist is named as soon as the job must be priced
        r = client.post("/v1/jobs", json=_body(model_id, "aer-noisy:fake_nowhere", budget={"max_shots": 10}))
        _refused(r, "body.backend", "fake_nowhere")
    assert _jobs_of(served, owner) == 0


@pytest.fixture
def tight(settings) -> Iterator[tuple[object, object]]:
    """An API with tight job bounds: 1 MiB of job memory above the baseline, 1 s of job time."""
    from conftest import ServedApp

    bounded = settings.model_copy(update={"job_memory_bytes": BASE_BYTES + (1 << 20), "max_job_seconds": 1.0})
    app = ServedApp(bounded)
    yield app, bounded
    app.stop()


def test_memory_and_time_bounds_are_checked_at_submit(tight) -> None:
    served, settings = tight
    client, owner, model_id = _owner(served, settings)
    with client:
        # aer: one sample at T = 20 holds 20 steps x 10 neurons x 8 KiB = 1.6 MB > 1 MiB
        r = client.post("/v1/jobs", json=_body(model_id, "aer", n=1, encoder={"T": 20, "p_max": 0.5}))
        _refused(r, "body.encoder.T", "SQSNN_JOB_MEMORY_BYTES=")
        # aer: 3 samples at the model's T = 4 fit in memory, but one chunk alone is estimated at 2 s > 1 s
        _refused(client.post("/v1/jobs", json=_body(model_id, "aer")), "body.inputs", "SQSNN_MAX_JOB_SECONDS=1")
        # the exact engine: 3 samples take about 0.05 s, accepted
        r = client.post("/v1/jobs", json=_body(model_id, "exact"))
        assert r.status_code == 202, r.text
        assert client.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 202
    assert _jobs_of(served, owner) == 1


@pytest.mark.parametrize("backend", ["aer", "ibm-local:fake_kingston", "braket-local:sv"])
def test_a_reservation_arn_off_a_braket_device_is_refused(served, settings, backend) -> None:
    client, owner, model_id = _owner(served, settings)
    with client:
        r = client.post("/v1/jobs", json=_body(model_id, backend, options={"reservation_arn": RESERVATION}))
        assert r.status_code == 422 and "reservation_arn" in r.text, r.text
        r = client.post(
            "/v1/jobs",
            json=_body(model_id, "braket:arn:aws:braket:::device/qpu/x/y", options={"reservation_arn": "r1"}),
        )
        assert r.status_code == 422 and "reservation_arn" in r.text, r.text
    assert _jobs_of(served, owner) == 0


def _train_body(backend: str, options: dict | None = None, **extra) -> dict:
    """Digits 0 vs 1, 64-4-2 with direct synapses, the local rule measured on ``backend`` (chain, 8 shots)."""
    return {
        "kind": "train", "model": {"hidden": [4], "direct": True},
        "dataset": {"name": "digits", "classes": [0, 1], "limit_train": 32, "limit_test": 8},
        "encoder": {"T": 3, "p_max": 0.5},
        "training": {"method": "local", "estimator": "chain", "shots": 8, "epochs": 2, "batch_size": 16},
        "backend": backend, "options": options, "seed": 0, **extra,
    }  # fmt: skip


def test_a_training_job_whose_budget_cannot_pay_one_epoch_is_refused_at_submit(served, settings) -> None:
    client, owner, _ = _owner(served, settings)
    with client:
        priced = client.post("/v1/estimates", json=_train_body("aer"))
        assert priced.status_code == 200, priced.text
        per_epoch, total = priced.json()["per_epoch"]["shots"], priced.json()["total"]["shots"]
        assert 0 < per_epoch < total
        r = client.post("/v1/jobs", json=_train_body("aer", budget={"max_shots": per_epoch - 1}))
        _refused(r, "body.budget", "one epoch", f"{per_epoch} shots", f"max_shots={per_epoch - 1}")
        assert _jobs_of(served, owner) == 0
        # one epoch's worth is accepted: the worker trains until the budget stops it, with a checkpoint
        r = client.post("/v1/jobs", json=_train_body("aer", budget={"max_shots": per_epoch}))
        assert r.status_code == 202, r.text
        assert client.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 202
    assert _jobs_of(served, owner) == 1


def test_a_training_jobs_daily_spend_is_reserved_and_checked_at_submit(served, settings, braket_qpu) -> None:
    probe, _, _ = _owner(served, settings)
    with probe:
        priced = probe.post("/v1/estimates", json=_train_body(braket_qpu, OPTIONS))
    assert priced.status_code == 200, priced.text
    total = priced.json()["total"]
    client, owner, _ = _owner(served, settings, max_shots_per_day=total["shots"] + 1)
    with client:
        first = client.post("/v1/jobs", json=_train_body(braket_qpu, OPTIONS))
        assert first.status_code == 202, first.text
        with served.app.state.sessions() as s:  # the whole job is reserved at once, before any worker runs it
            job = s.get(Job, first.json()["id"])
            assert job.estimated_shots == total["shots"]
            assert job.estimated_cost_usd == pytest.approx(total["cost_usd"])
        r = client.post("/v1/jobs", json=_train_body(braket_qpu, OPTIONS))
        _refused(r, "body", "max_shots_per_day=", owner)
        assert client.post(f"/v1/jobs/{first.json()['id']}/cancel").status_code == 202
    assert _jobs_of(served, owner) == 1


def test_training_memory_and_time_are_checked_at_submit(settings) -> None:
    from conftest import ServedApp

    bounded = settings.model_copy(update={"job_memory_bytes": TRAIN_BASE_BYTES + (64 << 20), "max_job_seconds": 60.0})
    served = ServedApp(bounded)
    try:
        client, owner, _ = _owner(served, bounded)
        with client:
            wide = {"hidden": [4096]}
            big_batch = {"method": "bptt", "epochs": 1, "batch_size": 4096}
            r = client.post("/v1/jobs", json=_train_body("exact", model=wide, training=big_batch, encoder={"T": 100}))
            _refused(r, "body.training.batch_size", "SQSNN_JOB_MEMORY_BYTES=", "a batch of 4096 at T=100")
            r = client.post("/v1/jobs", json=_train_body("exact", model=wide, training={"epochs": 1000}))
            _refused(r, "body.training.epochs", "SQSNN_MAX_JOB_SECONDS=60", "1000 epochs of 32 samples")
            # 100 epochs fit (about 10 s) until every test image is evaluated in 100 runs after each (about 220 s)
            r = client.post(
                "/v1/jobs", json=_train_body("exact", model=wide, training={"epochs": 100, "eval_runs": 100})
            )
            _refused(r, "body.training.epochs", "SQSNN_MAX_JOB_SECONDS=60", "training.eval_runs")
            r = client.post("/v1/jobs", json=_train_body("exact", training={"epochs": 2}))  # 64-4-2: fits
            assert r.status_code == 202, r.text
            assert client.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 202
        assert _jobs_of(served, owner) == 1
    finally:
        served.stop()
