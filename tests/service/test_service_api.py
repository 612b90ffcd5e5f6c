"""API behaviour that needs no worker: auth, validation, owner scoping, idempotency, limits, listing."""

from __future__ import annotations

import uuid

import httpx
import pytest

pytestmark = pytest.mark.service


def test_missing_or_wrong_key_is_401(served) -> None:
    with httpx.Client(base_url=served.url) as anon:
        for path in ("/v1/jobs", "/v1/models", "/v1/backends", f"/v1/jobs/{uuid.uuid4()}"):
            r = anon.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert anon.get("/v1/jobs", headers={"Authorization": "Bearer sqsnn_wrong"}).status_code == 401
        assert anon.get("/v1/jobs", headers={"Authorization": "Basic abc"}).status_code == 401
        assert anon.get("/healthz").status_code == 200


def test_a_revoked_key_stops_working_within_the_cache_time(served, monkeypatch) -> None:
    import time
    from datetime import UTC, datetime

    from sqlalchemy import update

    from service import auth
    from workers.models import ApiKey

    monkeypatch.setattr(auth, "KEY_CACHE_S", 1.0)
    key = served.key(f"revoked-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/v1/jobs").status_code == 200  # verified and remembered
        with served.app.state.sessions() as s:
            digest = auth.hash_key(served.app.state.settings, key)
            s.execute(update(ApiKey).where(ApiKey.key_hash == digest).values(revoked_at=datetime.now(UTC)))
            s.commit()
        revoked = time.monotonic()
        while c.get("/v1/jobs").status_code == 200:
            assert time.monotonic() - revoked < 1.0 + 0.5, "a revoked key was still accepted after the cache time"
            time.sleep(0.05)
        assert c.get("/v1/jobs").status_code == 401


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"training": {"epochs": 0}}, ["body", "train", "training", "epochs"]),
        ({"model": {"hidden": [16], "mode": "classical"}}, ["body", "train", "model", "mode"]),
        ({"dataset": {"name": "cifar10"}}, ["body", "train", "dataset", "name"]),
        ({"encoder": {"T": 5, "p_max": 2}}, ["body", "train", "encoder", "p_max"]),
        ({"unexpected": 1}, ["body", "train", "unexpected"]),
        ({"training": {"method": "bptt", "estimator": "shift"}}, ["body", "train", "training"]),
        ({"backend": "no-such-backend"}, ["body", "train", "backend"]),
        ({"backend": "Bad Name!"}, ["body", "train", "backend"]),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(client, train_body, patch, loc) -> None:
    r = client.post("/v1/jobs", json=train_body(**patch))
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]]


def test_other_422s(client) -> None:
    r = client.post("/v1/jobs", json={"kind": "evaluate"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    missing_model = {
        "kind": "infer",
        "model_id": str(uuid.uuid4()),
        "inputs": {"source": "dataset", "name": "digits", "stop": 5},
    }
    r = client.post("/v1/jobs", json=missing_model)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "model_id"]
    bad_slice = {**missing_model, "inputs": {"source": "dataset", "name": "digits", "start": 5, "stop": 5}}
    r = client.post("/v1/jobs", json=bad_slice)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "infer", "inputs", "dataset"]
    assert client.get("/v1/jobs", params={"cursor": "%%%"}).status_code == 422
    assert client.get("/v1/jobs", params={"limit": 0}).json()["detail"][0]["loc"] == ["query", "limit"]
    r = client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"  # unparsable, documented as 400


def test_same_idempotency_key_gives_one_job(client, train_body) -> None:
    headers = {"Idempotency-Key": "exp-42"}
    first = client.post("/v1/jobs", json=train_body(), headers=headers)
    second = client.post("/v1/jobs", json=train_body(), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len(client.get("/v1/jobs").json()["items"]) == 1
    r = client.post("/v1/jobs", json=train_body(seed=2), headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_submit_answers_location_and_utc_timestamps(client, train_body) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC)
    headers = {"Idempotency-Key": f"loc-{uuid.uuid4().hex[:8]}"}
    r = client.post("/v1/jobs", json=train_body(), headers=headers)
    assert r.status_code == 202
    job = r.json()
    assert r.headers["location"] == f"{client.base_url}/v1/jobs/{job['id']}"
    assert client.post("/v1/jobs", json=train_body(), headers=headers).headers["location"] == r.headers["location"]
    got = client.get(r.headers["location"]).json()
    assert got["id"] == job["id"]
    for stamp in (job["created_at"], job["updated_at"], got["created_at"], got["updated_at"]):
        assert stamp.endswith("+00:00"), stamp
        assert timedelta(0) <= datetime.fromisoformat(stamp) - before < timedelta(seconds=30)
    assert client.get("/v1/jobs").json()["items"][0]["created_at"] == got["created_at"]
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:  # the queued job's "state" event
        data = json.loads(next(line for line in stream.iter_lines() if line.startswith("data: "))[6:])
    assert data["state"] == "queued" and data["created_at"].endswith("+00:00")
    assert timedelta(0) <= datetime.fromisoformat(data["created_at"]) - before < timedelta(seconds=30)


def test_naive_timestamps_are_read_as_utc() -> None:
    """SQLite (embedded mode) returns naive datetimes; they are UTC and answered with the offset."""
    from datetime import datetime, timedelta, timezone

    from workers.schemas.responses import JobSummary, iso_utc

    naive = datetime(2026, 1, 31, 12, 0, 0, 5)
    row = {"id": "j", "kind": "train", "state": "queued", "substate": None, "progress": 0.0, "backend": "exact"}
    row |= {"backend_used": None, "idempotency_key": None, "failure_reason": None, "started_at": None}
    row |= {"finished_at": None, "created_at": naive}
    assert JobSummary.model_validate(row).model_dump(mode="json")["created_at"] == "2026-01-31T12:00:00.000005+00:00"
    paris = datetime(2026, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert iso_utc(paris) == "2026-01-31T12:00:00+00:00"


def test_other_owners_job_is_404(served, client, train_body) -> None:
    job_id = client.post("/v1/jobs", json=train_body()).json()["id"]
    other = {"Authorization": f"Bearer {served.key('mallory')}"}
    with httpx.Client(base_url=served.url, headers=other) as c:
        for method, path in [
            ("GET", f"/v1/jobs/{job_id}"),
            ("GET", f"/v1/jobs/{job_id}/result"),
            ("GET", f"/v1/jobs/{job_id}/events"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
        ]:
            assert c.request(method, path).status_code == 404, path
        assert job_id not in [j["id"] for j in c.get("/v1/jobs").json()["items"]]
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_active_job_limit_is_429_and_cancel_frees_a_slot(client, train_body, settings) -> None:
    ids = [client.post("/v1/jobs", json=train_body(seed=i)).json()["id"] for i in range(settings.max_active_jobs)]
    r = client.post("/v1/jobs", json=train_body(seed=99))
    assert r.status_code == 429 and "SQSNN_MAX_ACTIVE_JOBS" in r.json()["message"] and r.headers["retry-after"]
    cancelled = client.post(f"/v1/jobs/{ids[0]}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"] is not None
    assert client.post("/v1/jobs", json=train_body(seed=99)).status_code == 202


def test_listing_filters_and_cursor_pagination(client, train_body) -> None:
    ids = [client.post("/v1/jobs", json=train_body(seed=i)).json()["id"] for i in range(3)]
    client.post(f"/v1/jobs/{ids[1]}/cancel")
    seen, cursor = [], None
    while True:
        page = client.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    assert [j["id"] for j in client.get("/v1/jobs", params={"state": "cancelled"}).json()["items"]] == [ids[1]]
    assert len(client.get("/v1/jobs", params={"kind": "infer"}).json()["items"]) == 0
    # listings are summaries: no spec (inline inputs), metrics or hardware runs
    item = client.get("/v1/jobs").json()["items"][0]
    assert {"spec", "epochs", "hardware"}.isdisjoint(item) and item["state"] in ("queued", "cancelled")
    assert "spec" in client.get(f"/v1/jobs/{item['id']}").json()


def test_system_endpoints(client) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    backends = client.get("/v1/backends").json()
    exact = next(b for b in backends if b["name"] == "exact")
    assert exact["kind"] == "simulator" and exact["availability"]["available"]
    assert "secret" not in str(backends).lower()
    client.get("/v1/jobs")
    metrics = client.get("/metrics").text
    assert 'sqsnn_http_requests_total{method="GET",route="/v1/jobs",status="200"}' in metrics
    assert 'sqsnn_jobs{state="queued"}' in metrics
    spec = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}/events", "/v1/models/{model_id}/checkpoint"} <= set(spec["paths"])


def test_cloud_credentials_are_reported_but_never_returned(client, monkeypatch) -> None:
    token = "ibm-token-that-must-not-leak-123"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", token)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    r = client.get("/v1/backends")
    by_name = {b["name"].split(":")[0]: b for b in r.json()}
    assert by_name["ibm"]["credentials_configured"] is True
    assert by_name["ibm"]["kind"] == "hardware" and by_name["ibm"]["queue"] == "sqsnn.hw"
    assert token not in r.text


def test_error_bodies_name_the_field(served, client, train_body) -> None:
    with httpx.Client(base_url=served.url) as anon:
        r = anon.get("/v1/jobs")
    assert r.status_code == 401 and r.json()["field"] == "header.Authorization" and r.json()["message"]
    r = client.post("/v1/jobs", json=train_body(training={"epochs": 0}))
    assert r.status_code == 422 and r.json()["field"] == "body.train.training.epochs"
    assert "body.train.training.epochs" in r.json()["message"]
    r = client.get(f"/v1/jobs/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json() == {
        "message": "job not found",
        "field": "path.job_id",
        "detail": "job not found",
    }
    job_id = client.post("/v1/jobs", json=train_body()).json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["field"] == "path.job_id" and "cancelled" in r.json()["message"]
    r = client.get("/v1/no-such-route")
    assert r.status_code == 404 and r.json()["message"] == "Not Found"


@pytest.mark.parametrize("bad", ["abc%00def", "%00", "1%27%20OR%20%271%27%3D%271", "0" * 37])
def test_ids_are_uuids_before_any_sql(client, bad) -> None:
    for path in (f"/v1/jobs/{bad}", f"/v1/jobs/{bad}/events", f"/v1/models/{bad}"):
        r = client.get(path)
        assert r.status_code == 422 and r.json()["field"] in ("path.job_id", "path.model_id"), (path, r.text)


def test_event_ids_out_of_range_are_422_naming_them(client, train_body) -> None:
    job_id = client.post("/v1/jobs", json=train_body()).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel")  # finished: a valid stream replays and ends
    for value in (str(2**63), "-1", "x"):
        r = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": value})
        assert r.status_code == 422 and r.json()["field"] == "header.Last-Event-ID", r.text
        r = client.get(f"/v1/jobs/{job_id}/events", params={"after": value})
        assert r.status_code == 422 and r.json()["field"] == "query.after", r.text
    r = client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(2**63 - 1)})
    assert r.status_code == 200 and "event:" not in r.text  # nothing after the largest id; the stream ends
    full = client.get(f"/v1/jobs/{job_id}/events").text
    assert full.count("event: state") == 2 and "retry: 2000" in full


def test_body_larger_than_the_limit_is_413_while_streaming(served, client, settings) -> None:
    limit = settings.max_body_bytes
    r = client.post("/v1/jobs", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body" and str(limit) in r.json()["message"]

    def chunks():  # no Content-Length: chunked transfer, counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"
    metrics = client.get("/metrics").text
    assert 'sqsnn_http_requests_total{method="POST",route="/v1/jobs",status="413"}' in metrics


@pytest.fixture
def limited(settings):
    """The app with small limits, in process (Starlette's TestClient), and a stored 64-input model."""
    from starlette.testclient import TestClient

    from service.app import create_app
    from service.auth import create_key
    from workers.models import Model

    small = settings.model_copy(
        update={"max_infer_samples": 3, "max_image_width": 100, "storage_quota_bytes": 3000, "max_active_jobs": 100}
    )
    app = create_app(small)
    owner = f"limited-{uuid.uuid4().hex[:8]}"
    with app.state.sessions() as s:
        key = create_key(s, small, owner)
        model = Model(
            owner=owner, config={"network": {"sizes": [64, 10]}, "kind": "static"}, metrics={},
            path="/nonexistent.pt", sha256="0" * 64, size_bytes=1000,
        )  # fmt: skip
        s.add(model)
        s.commit()
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c, model.id
        for job in c.get("/v1/jobs", params={"state": "queued", "limit": 100}).json()["items"]:
            c.post(f"/v1/jobs/{job['id']}/cancel")  # nothing left for a later test's worker
    app.state.db.dispose()


def test_submit_limits_are_422_naming_the_limit_and_quota_is_403(limited, train_body) -> None:
    c, model_id = limited

    def infer(images: list[list[float]]) -> httpx.Response:
        return c.post(
            "/v1/jobs", json={"kind": "infer", "model_id": model_id, "inputs": {"source": "images", "images": images}}
        )

    r = infer([[0.5] * 64] * 4)
    assert r.status_code == 422 and r.json()["field"] == "body.inputs.images" and "SQSNN_MAX_INFER_SAMPLES" in r.text
    r = infer([[0.5] * 101])
    assert r.status_code == 422 and r.json()["field"] == "body.inputs.images" and "SQSNN_MAX_IMAGE_WIDTH" in r.text
    r = infer([[0.5] * 63])
    assert r.status_code == 422 and "the model expects 64" in r.json()["message"]
    sliced = {"kind": "infer", "model_id": model_id, "inputs": {"source": "dataset", "name": "digits", "stop": 4}}
    r = c.post("/v1/jobs", json=sliced)
    assert r.status_code == 422 and r.json()["field"] == "body.inputs.stop"
    # quota 3000 bytes: the model file (1000) + specs; each accepted spec is stored as JSON text
    assert infer([[0.5] * 64] * 3).status_code == 202
    statuses = [c.post("/v1/jobs", json=train_body(seed=i)).status_code for i in range(8)]
    assert statuses[0] == 202 and statuses[-1] == 403, statuses
    assert statuses == sorted(statuses, key=lambda code: code == 403)  # once refused, always refused
    r = c.post("/v1/jobs", json=train_body(seed=99))
    assert r.status_code == 403 and "SQSNN_STORAGE_QUOTA_BYTES" in r.json()["message"]


def test_stored_bytes_follow_the_spec_and_the_result_as_stored(limited, train_body) -> None:
    """jobs.stored_bytes (the quota's summand) is computed by the database on every write: the spec's JSON text
    at submission, plus the result's when a worker stores one."""
    import json

    from workers.models import Job

    c, _ = limited
    job_id = c.post("/v1/jobs", json=train_body(seed=7)).json()["id"]
    sessions = c.app.state.sessions  # type: ignore[attr-defined]
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.stored_bytes == len(json.dumps(job.spec))
        job.result = {"test_accuracy": 0.5, "note": "x" * 100}
        s.commit()
        s.refresh(job)
        assert job.stored_bytes == len(json.dumps(job.spec)) + len(json.dumps(job.result))


def test_retention_keeps_the_newest_checkpoints_and_the_best(served, settings, tmp_path) -> None:
    from datetime import timedelta

    from sqlalchemy import select

    from service.retention import prune
    from workers.models import EpochMetric, Job, JobEvent, StoredCheckpoint, utcnow

    accuracies = {1: 0.5, 2: 0.9, 3: 0.6, 4: 0.7, 5: 0.65}  # keep 2: epochs 5 and 4, and 2 (the best)
    now = utcnow()
    with served.app.state.sessions() as s:
        jobs = {}
        for state, finished in (("succeeded", now - timedelta(days=8)), ("running", None)):
            job = Job(
                owner=f"retention-{uuid.uuid4().hex[:6]}", kind="train", state=state, spec={}, backend="exact",
                queue="sqsnn.sim", request_hash="0" * 64, finished_at=finished,
            )  # fmt: skip
            s.add(job)
            s.flush()
            jobs[state] = job.id
            for epoch, acc in accuracies.items():
                path = tmp_path / f"{state}-{epoch}.pt"
                path.write_bytes(b"x" * 100)
                s.add(StoredCheckpoint(job_id=job.id, epoch=epoch, path=str(path), sha256="0" * 64, size_bytes=100))
                s.add(EpochMetric(job_id=job.id, epoch=epoch, train_loss=1.0, train_accuracy=acc,
                                  test_accuracy=acc, spike_rates=[0.1], seconds=1.0))  # fmt: skip
            for kind in ("state", "progress", "progress", "epoch"):
                s.add(JobEvent(job_id=job.id, kind=kind, data={}))
        s.commit()
        pruned = prune(s, settings.model_copy(update={"checkpoint_keep": 2}))
        assert pruned.checkpoints >= 4 and pruned.progress_events >= 2
        for state, job_id in jobs.items():
            kept = s.scalars(select(StoredCheckpoint.epoch).where(StoredCheckpoint.job_id == job_id)).all()
            assert sorted(kept) == [2, 4, 5]
            assert sorted(p.name for p in tmp_path.glob(f"{state}-*.pt")) == [f"{state}-{e}.pt" for e in (2, 4, 5)]
            kinds = sorted(s.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id)).all())
            # progress events go only for jobs finished longer ago than the retention
            assert kinds == (["epoch", "state"] if state == "succeeded" else ["epoch", "progress", "progress", "state"])


def test_sse_disconnects_release_the_stream(served, client, train_body) -> None:
    import time

    job_id = client.post("/v1/jobs", json=train_body()).json()["id"]  # stays queued: the streams stay open
    waiters = served.app.state.wakeups.waiters
    streams = [client.stream("GET", f"/v1/jobs/{job_id}/events") for _ in range(5)]
    lines = []  # kept: a line iterator that is garbage-collected closes its connection
    for s in streams:
        r = s.__enter__()
        lines.append(r.iter_lines())
        assert r.status_code == 200 and next(lines[-1]).startswith("retry")
    assert len(waiters[job_id]) == 5
    for s in streams:
        s.__exit__(None, None, None)
    deadline = time.monotonic() + 10
    while job_id in waiters:  # sse-starlette notices each disconnect and ends its generator
        assert time.monotonic() < deadline, f"{len(waiters[job_id])} streams still registered"
        time.sleep(0.05)


def test_listing_is_one_query_whatever_the_page_size(limited, train_body) -> None:
    from sqlalchemy import event

    c, _ = limited
    for seed in range(3):  # within the fixture's 3000-byte quota
        assert c.post("/v1/jobs", json=train_body(seed=seed)).status_code == 202
    statements: list[str] = []
    engine = c.app.state.db.sessions.kw["bind"]  # type: ignore[attr-defined]

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        for limit in (1, 3, 100):
            statements.clear()
            page = c.get("/v1/jobs", params={"limit": limit}).json()
            assert len(page["items"]) == min(limit, 3)
            # one page (the key was verified by the submissions and is remembered); the spec is not even read
            assert len(statements) == 1 and "FROM jobs" in statements[0] and "spec" not in statements[0], statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_job_is_read_in_one_query_until_it_starts_then_with_its_epochs(limited, train_body) -> None:
    from sqlalchemy import event

    from workers.models import EpochMetric, Job, utcnow

    c, _ = limited
    job_id = c.post("/v1/jobs", json=train_body()).json()["id"]
    engine = c.app.state.db.sessions.kw["bind"]  # type: ignore[attr-defined]
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        queued = c.get(f"/v1/jobs/{job_id}").json()
        assert (queued["state"], queued["epochs"], queued["hardware"]) == ("queued", [], [])
        assert len(statements) == 1 and "FROM jobs" in statements[0], statements  # the key is remembered
        with c.app.state.sessions() as s:  # type: ignore[attr-defined]
            job = s.get(Job, job_id)
            job.started_at = utcnow()  # as a worker's set_state(running) does before its first epoch
            s.add(EpochMetric(job_id=job_id, epoch=1, train_loss=0.5, train_accuracy=0.8, test_accuracy=0.75,
                              spike_rates=[0.1, 0.2], seconds=1.0))  # fmt: skip
            s.commit()
        statements.clear()
        started = c.get(f"/v1/jobs/{job_id}").json()
        assert [e["test_accuracy"] for e in started["epochs"]] == [0.75] and started["hardware"] == []
        assert len(statements) == 3, statements  # the job, then its epochs and its hardware submissions
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_job_the_broker_did_not_take_is_left_to_the_reaper(settings, train_body) -> None:
    from starlette.testclient import TestClient

    from service.app import create_app
    from service.auth import create_key
    from workers.models import Job

    unreachable = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})  # nothing listens on port 9
    app = create_app(unreachable)
    with app.state.sessions() as s:
        key = create_key(s, unreachable, f"nobroker-{uuid.uuid4().hex[:8]}")
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as c:
            r = c.post("/v1/jobs", json=train_body())
            assert r.status_code == 202 and r.json()["state"] == "queued"  # stored: the submission is not lost
            with app.state.sessions() as s:
                job = s.get(Job, r.json()["id"])
                assert job is not None and job.enqueued_at is None  # the reaper sends it at its next round
                s.delete(job)
                s.commit()
    finally:
        app.state.db.dispose()
