"""The QPU job state machine against real PostgreSQL, Redis and a prefork worker (2 processes) with beat
polling every second, on the loopback provider (tests/service/qpu_provider.py): exactly-once submission
under concurrency and under SIGKILL at each step, retries, final errors, cancellation, spend limits,
not_before."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from qpu_jobs import infer_spec, keys_of, store_model, submissions, submit, wait_final
from qpu_provider import accepted, arm, cancelled, sessions, store
from sqlalchemy import select

from workers.models import Job, JobEvent, SpendLimit, utcnow

pytestmark = pytest.mark.service

BACKEND = "loopback:q2"  # queued for 2 polls, running for 1, then done


@pytest.fixture(scope="module")
def stack(served, settings, tmp_path_factory):
    """(sessions, owner, model id, redis) with one prefork worker (2 processes) running beat."""
    from conftest import WorkerProcess

    owner = f"qpu-{uuid.uuid4().hex[:6]}"
    sessions_ = served.app.state.sessions
    model_id = store_model(sessions_, settings, owner)
    w = WorkerProcess(settings, tmp_path_factory.mktemp("qpu") / "w.log", "qpu", beat=True)
    yield sessions_, owner, model_id, store(settings.pubsub_url)
    w.stop()


def _events(sessions_, job_id: str, kind: str) -> list[dict]:
    with sessions_() as s:
        where = (JobEvent.job_id == job_id) & (JobEvent.kind == kind)
        return [e.data for e in s.scalars(select(JobEvent).where(where).order_by(JobEvent.id))]


def test_twenty_jobs_submit_every_layer_exactly_once(stack, settings) -> None:
    sessions_, owner, model_id, r = stack
    ids = [submit(sessions_, settings, owner, infer_spec(model_id, BACKEND)) for _ in range(20)]
    jobs = wait_final(sessions_, ids, timeout=240)
    assert {j.state for j in jobs.values()} == {"succeeded"}, {j.failure_reason for j in jobs.values()}
    for job_id in ids:
        assert [accepted(r, k) for k in keys_of(job_id)] == [1, 1]  # every provider submission exactly once
        rows = submissions(sessions_, job_id)
        assert [(x.step, x.status) for x in rows] == [(0, "done"), (1, "done")]
        for row in rows:  # fetched exactly once per provider job
            assert int(r.get(f"loopback:fetches:{row.provider_job_id}")) == 1
        assert rows[0].session_id == rows[1].session_id  # the later layer joined the first one's session
        job = jobs[job_id]
        assert job.shots == 2 * 3 and job.qpu_seconds == pytest.approx(0.5)
        queue = _events(sessions_, job_id, "queue")  # loopback:q2 reports position 1, then 0, per layer
        assert [(e["layer"], e["position"]) for e in queue] == [(0, 1), (0, 0), (1, 1), (1, 0)]
    assert not {x.session_id for j in ids for x in submissions(sessions_, j)} & sessions(r)[0]  # all closed
    # same spec and seed: the same predictions and spike trains from every job
    assert len({str(j.result["predictions"]) + str(j.result["spikes"]) for j in jobs.values()}) == 1


@pytest.mark.parametrize(
    ("step", "point"),
    [(0, "accepted"), (0, "fetched"), (1, "submit")],
    ids=["after-submit", "after-fetch", "before-next-submit"],
)
def test_sigkill_at_each_step_gives_the_undisturbed_result(stack, settings, step, point) -> None:
    sessions_, owner, model_id, r = stack
    reference = submit(sessions_, settings, owner, infer_spec(model_id, BACKEND))
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, BACKEND))
    arm(r, keys_of(job_id)[step], point, "kill")
    jobs = wait_final(sessions_, [reference, job_id], timeout=120)
    assert jobs[job_id].state == "succeeded", jobs[job_id].failure_reason
    assert r.get(f"loopback:fault:{keys_of(job_id)[step]}:{point}") is None  # the kill did fire
    assert [accepted(r, k) for k in keys_of(job_id)] == [1, 1]  # no duplicate provider job
    assert jobs[job_id].result["predictions"] == jobs[reference].result["predictions"]
    assert jobs[job_id].result["spikes"] == jobs[reference].result["spikes"]


def test_transient_error_is_retried(stack, settings) -> None:
    sessions_, owner, model_id, r = stack
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, BACKEND))
    arm(r, keys_of(job_id)[0], "poll", "transient")
    job = wait_final(sessions_, [job_id], timeout=60)[job_id]
    assert job.state == "succeeded", job.failure_reason
    retries = [e for e in _events(sessions_, job_id, "provider") if "retry" in e]
    assert [e["retry"] for e in retries] == [1] and "transient" in retries[0]["error"]
    assert submissions(sessions_, job_id)[0].attempts == 1


def test_final_error_fails_with_reason_and_cancels_the_provider_job(stack, settings) -> None:
    sessions_, owner, model_id, r = stack
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, BACKEND))
    arm(r, keys_of(job_id)[1], "poll", "final")
    job = wait_final(sessions_, [job_id], timeout=60)[job_id]
    assert job.state == "failed"
    assert job.failure_reason == "provider error on layer 1: loopback final error at poll"
    rows = submissions(sessions_, job_id)
    assert [x.status for x in rows] == ["done", "failed"]
    assert rows[1].provider_job_id in cancelled(r)
    assert rows[1].session_id in sessions(r)[1]  # closed


def test_owner_cancel_cancels_the_provider_job(stack, settings, served) -> None:
    import httpx

    sessions_, owner, model_id, r = stack
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, "loopback:q1000"))
    deadline = time.monotonic() + 60
    while not submissions(sessions_, job_id) or submissions(sessions_, job_id)[0].status not in ("queued",):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    key = served.key(owner)
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    job = wait_final(sessions_, [job_id], timeout=30)[job_id]
    assert job.state == "cancelled" and "owner" in job.failure_reason
    assert submissions(sessions_, job_id)[0].provider_job_id in cancelled(r)


@pytest.mark.parametrize(
    ("limit", "named"),
    [({"max_shots_per_day": 10}, "max_shots_per_day=10"), ({"max_usd_per_day": 0.05}, "max_usd_per_day=0.05")],
    ids=["shots", "dollars"],
)
def test_daily_spend_limit_refuses_before_any_submission(stack, settings, limit, named) -> None:
    sessions_, _, _, r = stack
    owner = f"thrifty-{uuid.uuid4().hex[:6]}"
    with sessions_() as s:
        s.add(SpendLimit(owner=owner, **limit))
        s.commit()
    own_model = store_model(sessions_, settings, owner)
    # per job: 2 layers x 3 samples = 6 shots; 2 tasks x $0.01 + 6 shots x $0.001 = $0.026 at loopback prices
    first = submit(sessions_, settings, owner, infer_spec(own_model, BACKEND))
    job = wait_final(sessions_, [first], timeout=60)[first]
    assert job.state == "succeeded" and job.shots == 6 and job.cost_usd == pytest.approx(0.026)
    second = submit(sessions_, settings, owner, infer_spec(own_model, BACKEND))  # 12 shots > 10, $0.052 > $0.05
    job = wait_final(sessions_, [second], timeout=60)[second]
    assert job.state == "failed" and named in job.failure_reason, job.failure_reason
    assert submissions(sessions_, second) == [] and accepted(r, keys_of(second)[0]) == 0


def test_not_before_holds_the_job_until_then(stack, settings) -> None:
    sessions_, owner, model_id, _ = stack
    at = utcnow() + timedelta(seconds=4)
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, "loopback:q0", not_before=at.isoformat()))
    job = wait_final(sessions_, [job_id], timeout=60)[job_id]
    assert job.state == "succeeded", job.failure_reason
    assert at <= job.started_at < at + timedelta(seconds=10)  # the reaper (every second) sent it once due
    with sessions_() as s:
        states = [e.data.get("substate") for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))]
        assert s.get(Job, job_id).not_before == at
    assert "scheduled" in states


def test_concurrent_advances_of_one_submission_take_each_step_once(served, settings, monkeypatch) -> None:
    """Four threads drive the same job's submissions as fast as they can (each ignoring the wait the
    machine asks for): the row locks and status checks let each provider job be submitted and fetched once."""
    import threading

    from workers.context import JobContext, claim
    from workers.hardware import advance, start_hardware

    monkeypatch.setenv("SQSNN_REDIS_URL", settings.pubsub_url)
    sessions_ = served.app.state.sessions
    r = store(settings.pubsub_url)
    owner = f"race-{uuid.uuid4().hex[:6]}"
    job_id = submit(
        sessions_, settings, owner, infer_spec(store_model(sessions_, settings, owner), BACKEND), send=False
    )
    playing = settings.model_copy(update={"lease_s": 120.0})  # the test plays the worker: no reaper takeover
    assert claim(playing, job_id, "test-worker")
    first: list[int] = []
    start_hardware(JobContext(playing, job_id, "test-worker"), first.append)

    def drive() -> None:
        current = first[0]
        while not _final(sessions_, job_id):
            current, _ = advance(settings, current)

    threads = [threading.Thread(target=drive) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    job = wait_final(sessions_, [job_id], timeout=1)[job_id]
    assert job.state == "succeeded", job.failure_reason
    assert [accepted(r, k) for k in keys_of(job_id)] == [1, 1]
    rows = submissions(sessions_, job_id)
    assert [int(r.get(f"loopback:fetches:{row.provider_job_id}")) for row in rows] == [1, 1]
    assert job.shots == 6 and [e["layer"] for e in _events(sessions_, job_id, "spikes")] == [0, 1]
    assert [e["state"] for e in _events(sessions_, job_id, "state")].count("succeeded") == 1


def _final(sessions_, job_id: str) -> bool:
    with sessions_() as s:
        return s.get(Job, job_id).state in ("succeeded", "failed", "cancelled")


def test_an_unavailable_provider_falls_back_to_a_simulator_on_the_prefork_worker(stack, settings) -> None:
    sessions_, owner, model_id, _ = stack
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, "loopback:offline", fallback="aer"))
    job = wait_final(sessions_, [job_id], timeout=120)[job_id]
    assert job.state == "succeeded", job.failure_reason
    assert job.backend_used == "aer" and job.result["backend"] == "aer"
    assert job.result["fallback"] == {
        "requested": "loopback:offline", "used": "aer", "reason": "loopback provider offline"
    }  # fmt: skip
    rows = submissions(sessions_, job_id)
    assert [(x.step, x.backend, x.status) for x in rows] == [(0, "aer", "done"), (1, "aer", "done")]
    refused = submit(sessions_, settings, owner, infer_spec(model_id, "loopback:offline"))  # fallback none
    job = wait_final(sessions_, [refused], timeout=60)[refused]
    assert job.state == "failed" and "fallback='none' forbids running elsewhere" in job.failure_reason


def test_a_lost_submission_message_is_sent_again_by_the_poller(stack, settings, monkeypatch) -> None:
    """The first advance message never reaches the broker (as when Redis restarts empty): once the row has
    not been looked at for hardware_stale_s, beat's poll_hardware sends it again and the job completes."""
    from workers.context import JobContext, claim
    from workers.hardware import start_hardware

    monkeypatch.setenv("SQSNN_REDIS_URL", settings.pubsub_url)  # start_hardware builds the provider here
    sessions_, owner, model_id, r = stack
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, BACKEND), send=False)
    playing = settings.model_copy(update={"lease_s": 120.0})  # the test plays the worker: no reaper takeover
    assert claim(playing, job_id, "test-worker")
    start_hardware(JobContext(playing, job_id, "test-worker"), lambda sub_id: None)  # the message is lost
    started = time.monotonic()
    job = wait_final(sessions_, [job_id], timeout=60)[job_id]
    assert job.state == "succeeded", job.failure_reason
    assert time.monotonic() - started >= settings.hardware_stale_s - 1  # it waited to be stale, then recovered
    assert [accepted(r, k) for k in keys_of(job_id)] == [1, 1]


def test_the_reaper_fails_a_qpu_job_left_without_an_open_submission(stack, settings) -> None:
    from workers.events import set_state

    sessions_, owner, model_id, _ = stack
    job_id = submit(sessions_, settings, owner, infer_spec(model_id, BACKEND), send=False)
    with sessions_() as s:
        job = s.get(Job, job_id)
        job.enqueued_at = utcnow()
        set_state(s, job, "running", substate="waiting_qpu")  # as a crash of an older release could leave it
        s.commit()
    job = wait_final(sessions_, [job_id], timeout=30)[job_id]
    assert job.state == "failed" and job.failure_reason == "no open provider submission is left for this QPU job"
