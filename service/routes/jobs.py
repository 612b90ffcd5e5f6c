"""/v1/jobs: submit, list, inspect, cancel, stream and fetch results of training and inference jobs.

Each endpoint does its database work, authentication included, in one unit of work (``Db.run``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sse_starlette import EventSourceResponse

from service.deps import CeleryDep, Db, DbDep, JobId, KeyDep, SettingsDep, authenticate, owned
from service.errors import ApiError, error_responses, unprocessable
from service.limits import check_inputs, check_quota
from service.pagination import PageCursor, PageLimit, fetch_page
from service.sse import MAX_EVENT_ID, event_response
from workers.admission import Refused, admit
from workers.celery_app import enqueue
from workers.db import session_scope
from workers.events import add_event, commit_and_publish, set_state
from workers.models import ACTIVE_STATES, TERMINAL_STATES, Job, JobKind, JobState, new_id, utcnow
from workers.routing import check_backend, queue_for
from workers.schemas.requests import InferJobSpec, JobSpec
from workers.schemas.responses import JobOut, JobPage, JobResult, JobSummary
from workers.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

E404 = "no such job for this API key's owner"
SUMMARY_COLUMNS = [getattr(Job, name) for name in JobSummary.model_fields]


def _full(s: Session, job_id: str) -> Job | None:
    """One job with its epochs and hardware submissions loaded. Both are written only while a job runs, so a job
    that never started (``started_at`` unset: queued or scheduled, the jobs clients poll most) has none and its
    row is the only query; a started job's lists are loaded as it is serialised, inside the unit of work."""
    job = s.get(Job, job_id)
    if job is not None and job.started_at is None:
        _no_runs_yet(job)
    return job


def _no_runs_yet(job: Job) -> None:
    """Mark the epochs and submissions of a job that never ran as loaded and empty (no queries)."""
    for relation in ("epochs", "submissions"):
        set_committed_value(job, relation, [])


OWNER_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:owner))")
"""Serialises one owner's submissions until the transaction ends (PostgreSQL)."""
ACTIVE_JOBS = (
    select(func.count())
    .select_from(Job.__table__)
    .where(Job.__table__.c.owner == bindparam("owner"), Job.__table__.c.state.in_(ACTIVE_STATES))
)
"""The number of ``:owner``'s active jobs (built once: its cache key is memoised; run on the connection)."""


@dataclass(frozen=True)
class _Submitted:
    """What the submit unit of work decided: the job, its queue, and whether it was created now or replayed."""

    job: JobOut
    queue: str
    created: bool


def _submit(
    settings: Settings, key: str, spec: JobSpec, idempotency_key: str | None
) -> Callable[[Session], _Submitted]:
    """The unit of work of a submission: authenticate, replay or validate, check limits, store and commit."""
    spec_json = spec.model_dump(mode="json")
    spec_text = json.dumps(spec_json, sort_keys=True)
    request_hash = hashlib.sha256(spec_text.encode()).hexdigest()

    def replay(s: Session, owner: str) -> _Submitted | None:
        job_id = s.scalar(select(Job.id).where(Job.owner == owner, Job.idempotency_key == idempotency_key))
        if job_id is None:
            return None
        row = _full(s, job_id)
        assert row is not None  # found by the query above, in this transaction
        if row.request_hash != request_hash:
            unprocessable(
                ("header", "Idempotency-Key"), "this Idempotency-Key was already used with a different request body"
            )
        return _Submitted(JobOut.model_validate(row), row.queue, created=False)

    def work(s: Session) -> _Submitted:
        owner = authenticate(s, settings, key)
        if s.get_bind().dialect.name == "postgresql":
            # serialise submissions per owner so the active-job limit and the quota hold under concurrency
            s.connection().execute(OWNER_LOCK, {"owner": owner})
        if idempotency_key is not None and (done := replay(s, owner)) is not None:
            return done
        reason = check_backend(spec.backend, spec.kind)
        if reason:
            unprocessable(("body", "backend"), reason)
        if isinstance(spec, InferJobSpec):
            check_inputs(s, settings, owner, spec)
        active = s.connection().execute(ACTIVE_JOBS, {"owner": owner}).scalar()
        if (active or 0) >= settings.max_active_jobs:
            raise ApiError(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"{active} active jobs; the limit per owner is {settings.max_active_jobs} (SQSNN_MAX_ACTIVE_JOBS)",
                headers={"Retry-After": "30"},
            )
        check_quota(s, settings, owner, len(spec_text))
        now = utcnow()
        job = Job(
            id=new_id(),
            owner=owner,
            kind=spec.kind,
            state="queued",
            spec=spec_json,
            backend=spec.backend,
            queue=queue_for(spec.backend),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            input_model_id=str(spec.model_id) if isinstance(spec, InferJobSpec) else None,
            created_at=now,
            enqueued_at=now,  # sent right after the commit; cleared again if that send fails
        )
        s.add(job)
        try:  # memory, time, budget and daily spend, as the worker would check them
            admit(s, settings, job, spec)
        except Refused as exc:
            unprocessable(("body", *exc.field), str(exc))
        set_state(s, job, "queued")
        try:  # nobody can be streaming a job before it exists: the event is stored, not announced
            s.commit()
        except IntegrityError:  # a concurrent request with the same Idempotency-Key won
            s.rollback()
            done = replay(s, owner)
            if done is None:
                raise
            return done
        _no_runs_yet(job)
        return _Submitted(JobOut.model_validate(job), job.queue, created=True)

    return work


def _enqueue_or_leave_to_reaper(db: Db, celery: Celery, done: _Submitted) -> None:
    """Send a committed job to the broker; when that fails, clear its ``enqueued_at`` so that the reaper sends
    it at its next round (and if even that fails, the reaper re-sends it once its ``enqueued_at`` is stale)."""
    try:
        enqueue(celery, done.job.id, done.queue)
    except Exception as exc:
        log.warning("could not enqueue job %s now (%s); the reaper will retry", done.job.id, exc)
        try:
            with session_scope(db.sessions) as s:
                s.execute(update(Job).where(Job.id == done.job.id, Job.state == "queued").values(enqueued_at=None))
                s.commit()
        except SQLAlchemyError as db_exc:
            log.warning("could not mark job %s for the reaper (%s)", done.job.id, db_exc)


LOCATION_HEADER = {
    "Location": {"description": "URL of the job (`GET` it to follow the job)", "schema": {"type": "string"}}
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        202: {"description": "the job, queued (or the earlier job of a replayed request)", "headers": LOCATION_HEADER},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def submit_job(
    spec: Annotated[JobSpec, Body()],
    request: Request,
    response: Response,
    db: DbDep,
    settings: SettingsDep,
    celery: CeleryDep,
    key: KeyDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=200, description="repeat-safe submission key"),
    ] = None,
) -> JobOut:
    """Submit a training or inference job; it is queued and runs on a worker. Returns 202 with the job and its
    URL in ``Location``.

    Repeating a request with the same ``Idempotency-Key`` returns the job the first request created (header
    ``Idempotent-Replayed: true``); the same key with another body is a 422. Inline images: at most
    ``SQSNN_MAX_INFER_SAMPLES`` samples of at most ``SQSNN_MAX_IMAGE_WIDTH`` values, as wide as the model's
    input. 403 when the owner's stored bytes would exceed ``SQSNN_STORAGE_QUOTA_BYTES``.
    """

    def send(done: _Submitted) -> None:  # broker I/O once the unit of work has given its connection back
        if done.created:
            _enqueue_or_leave_to_reaper(db, celery, done)

    done = await db.run(_submit(settings, key, spec, idempotency_key), then=send)
    response.headers["Location"] = str(request.url_for("get_job", job_id=done.job.id))
    if not done.created:
        response.headers["Idempotent-Replayed"] = "true"
        return done.job
    request.app.state.metrics.jobs_submitted.labels(kind=spec.kind).inc()
    return done.job


@router.get("", responses=error_responses(401, 422, 503))
async def list_jobs(
    db: DbDep,
    settings: SettingsDep,
    key: KeyDep,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> JobPage:
    """The owner's jobs, newest first, optionally filtered by state and kind: summaries (no spec, metrics or
    hardware runs), read in one query."""

    def work(s: Session) -> JobPage:
        owner = authenticate(s, settings, key)
        stmt = select(Job).where(Job.owner == owner)
        if state is not None:
            stmt = stmt.where(Job.state == state)
        if kind is not None:
            stmt = stmt.where(Job.kind == kind)
        rows, nxt = fetch_page(s, stmt, Job, SUMMARY_COLUMNS, cursor, limit)
        return JobPage(items=[JobSummary.model_validate(j) for j in rows], next_cursor=nxt)

    return await db.run(work, read_only=True)


@router.get("/{job_id}", responses=error_responses(401, 404, 422, 503, e404=E404))
async def get_job(job_id: JobId, db: DbDep, settings: SettingsDep, key: KeyDep) -> JobOut:
    """One job: state, sub-state, progress, metrics so far, backend used, hardware job ids, shots, cost."""

    def work(s: Session) -> JobOut:
        owner = authenticate(s, settings, key)
        job = _full(s, str(job_id))
        if job is None or job.owner != owner:
            owned(s, Job, job_id, owner)  # raises the 404
        return JobOut.model_validate(job)

    return await db.run(work, read_only=True)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(401, 404, 409, 422, 503, e404=E404, e409="the job has already finished"),
)
async def cancel_job(job_id: JobId, db: DbDep, settings: SettingsDep, key: KeyDep) -> JobOut:
    """Cancel a job: a queued job is cancelled at once, a running one between two batches."""

    def work(s: Session) -> JobOut:
        owner = authenticate(s, settings, key)
        job = owned(s, Job, job_id, owner)
        s.refresh(job, with_for_update=True)
        if job.state in TERMINAL_STATES:
            raise ApiError(status.HTTP_409_CONFLICT, f"job already {job.state}", "path.job_id")
        job.cancel_requested = True
        if job.state == "queued":
            ev = set_state(s, job, "cancelled", reason="cancelled by its owner before it started")
        else:
            ev = add_event(s, job.id, "cancel", {"requested": True})
        commit_and_publish(s, settings.pubsub_url, [ev])
        return JobOut.model_validate(job)

    return await db.run(work)


LAST_EVENT_ID_DOC = "id of the last event received; the stream resumes after it (integer, 0 to 2^63-1)"


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "Server-Sent Events (`id`: the event id, `event`: its kind, `data`: JSON); "
            "ends when the job has finished and every event was sent, or after SQSNN_SSE_MAX_S",
        },
        **error_responses(401, 404, 422, 503, e404=E404),
    },
)
async def stream_job_events(
    job_id: JobId,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    key: KeyDep,
    last_event_id: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description=LAST_EVENT_ID_DOC)
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_ID, description="replay events with id > after (0 to 2^63-1)")
    ] = None,
) -> EventSourceResponse:
    """Server-Sent Events: every stored event (state changes, progress, epochs, spikes) in id order, then live
    ones until the job finishes. Resume with ``Last-Event-ID`` or ``after`` (the larger one wins)."""

    def work(s: Session) -> None:
        owned(s, Job, job_id, authenticate(s, settings, key))

    await db.run(work, read_only=True)
    start = max(after or 0, last_event_id or 0)
    return event_response(db, request.app.state.wakeups, str(job_id), start)


@router.get(
    "/{job_id}/result",
    responses=error_responses(401, 404, 409, 422, 503, e404=E404, e409="the job has not succeeded"),
)
async def get_result(job_id: JobId, db: DbDep, settings: SettingsDep, key: KeyDep) -> JobResult:
    """The result of a succeeded job (training: model id and accuracy; inference: predictions, spikes)."""

    def work(s: Session) -> JobResult:
        job = owned(s, Job, job_id, authenticate(s, settings, key))
        if job.state != "succeeded" or job.result is None:
            raise ApiError(status.HTTP_409_CONFLICT, f"job is {job.state}; no result", "path.job_id")
        return JobResult(job_id=job.id, kind=job.kind, result=job.result)  # type: ignore[arg-type]

    return await db.run(work, read_only=True)
