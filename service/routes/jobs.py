"""/v1/jobs: submit, list, inspect, cancel, stream and fetch results of training and inference jobs."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.deps import CeleryDep, OwnerDep, SessionDep, SettingsDep, owned
from service.errors import unprocessable
from service.pagination import PageCursor, PageLimit, fetch_page
from service.schemas import JobOut, JobPage, JobResult
from service.sse import event_stream
from workers.celery_app import enqueue
from workers.events import add_event, commit_and_publish, set_state
from workers.models import ACTIVE_STATES, TERMINAL_STATES, Job, JobKind, JobState, Model, utcnow
from workers.routing import check_backend, queue_for
from workers.specs import InferJobSpec, JobSpec

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such job for this API key's owner"}}


def _validate_refs(session: Session, owner: str, spec: JobSpec) -> None:
    """Checks that need the database or the backend registry; 422 naming the field."""
    reason = check_backend(spec.backend, spec.kind)
    if reason:
        unprocessable(("body", "backend"), reason)
    if isinstance(spec, InferJobSpec):
        model = session.get(Model, str(spec.model_id))
        if model is None or model.owner != owner:
            unprocessable(("body", "model_id"), f"model {spec.model_id} not found")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        429: {"description": "too many active jobs for this owner"},
        422: {"description": "invalid body; `detail[].loc` names the field"},
    },
)
def submit_job(
    spec: Annotated[JobSpec, Body()],
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    owner: OwnerDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
) -> JobOut:
    """Submit a training or inference job; it is queued and runs on a worker. Returns 202 with the job.

    Repeating a request with the same ``Idempotency-Key`` returns the job the first request created.
    """
    spec_json = spec.model_dump(mode="json")
    request_hash = hashlib.sha256(json.dumps(spec_json, sort_keys=True).encode()).hexdigest()
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        # serialise submissions per owner so the active-job limit holds under concurrency
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:o))"), {"o": owner})

    def replay(existing: Job) -> JobOut:
        if existing.request_hash != request_hash:
            unprocessable(
                ("header", "Idempotency-Key"),
                "this Idempotency-Key was already used with a different request body",
            )
        response.headers["Idempotent-Replayed"] = "true"
        return JobOut.model_validate(existing)

    if idempotency_key is not None:
        existing = session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key))
        if existing is not None:
            return replay(existing)
    _validate_refs(session, owner, spec)
    active = session.scalar(
        select(func.count()).select_from(Job).where(Job.owner == owner, Job.state.in_(ACTIVE_STATES))
    )
    if (active or 0) >= settings.max_active_jobs:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"{active} active jobs; the limit per owner is {settings.max_active_jobs}",
            headers={"Retry-After": "30"},
        )
    job = Job(
        owner=owner,
        kind=spec.kind,
        state="queued",
        spec=spec_json,
        backend=spec.backend,
        queue=queue_for(spec.backend),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        input_model_id=str(spec.model_id) if isinstance(spec, InferJobSpec) else None,
        created_at=utcnow(),
    )
    session.add(job)
    session.flush()
    ev = set_state(session, job, "queued")
    try:
        commit_and_publish(session, settings.pubsub_url, [ev])
    except IntegrityError:
        session.rollback()
        existing = session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return replay(existing)
    request.app.state.metrics.jobs_submitted.labels(kind=spec.kind).inc()
    try:
        enqueue(celery, job.id, job.queue)
    except Exception as exc:  # the reaper enqueues jobs left without enqueued_at
        log.warning("could not enqueue job %s now (%s); the reaper will retry", job.id, exc)
    else:
        job.enqueued_at = utcnow()
        session.commit()
    return JobOut.model_validate(job)


@router.get("")
def list_jobs(
    session: SessionDep,
    owner: OwnerDep,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> JobPage:
    """The owner's jobs, newest first, optionally filtered by state and kind."""
    stmt = select(Job).where(Job.owner == owner)
    if state is not None:
        stmt = stmt.where(Job.state == state)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    rows, nxt = fetch_page(session, stmt, Job, cursor, limit)
    return JobPage(items=[JobOut.model_validate(j) for j in rows], next_cursor=nxt)


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """One job: state, sub-state, progress, metrics so far, backend used, hardware job ids, shots, cost."""
    return JobOut.model_validate(owned(session, Job, job_id, owner))


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, 409: {"description": "the job has already finished"}},
)
def cancel_job(job_id: str, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> JobOut:
    """Cancel a job: a queued job is cancelled at once, a running one between two batches."""
    job = owned(session, Job, job_id, owner)
    session.refresh(job, with_for_update=True)
    if job.state in TERMINAL_STATES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job already {job.state}")
    job.cancel_requested = True
    if job.state == "queued":
        ev = set_state(session, job, "cancelled", reason="cancelled by its owner before it started")
    else:
        ev = add_event(session, job.id, "cancel", {"requested": True})
    commit_and_publish(session, settings.pubsub_url, [ev])
    return JobOut.model_validate(job)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        **NOT_FOUND,
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events, ends with the job"},
    },
)
def stream_job_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
    after: Annotated[int | None, Query(ge=0, description="replay events with id > after")] = None,
) -> StreamingResponse:
    """Server-Sent Events: every stored event (state changes, progress, epochs, spikes) in order, then live
    ones until the job finishes. Resume with ``Last-Event-ID``."""
    owned(session, Job, job_id, owner)
    start = max(after or 0, last_event_id or 0)
    return StreamingResponse(
        event_stream(request.app, job_id, start, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{job_id}/result", responses={**NOT_FOUND, 409: {"description": "the job has not succeeded"}})
def get_result(job_id: str, session: SessionDep, owner: OwnerDep) -> JobResult:
    """The result of a succeeded job (training: model id and accuracy; inference: predictions, spikes)."""
    job = owned(session, Job, job_id, owner)
    if job.state != "succeeded" or job.result is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job is {job.state}; no result")
    return JobResult(job_id=job.id, kind=job.kind, result=job.result)  # type: ignore[arg-type]
