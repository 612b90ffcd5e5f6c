"""Server-Sent Events of one job, replayed from the stored event rows (sse-starlette).

The database is the only source of events. A stream holds no session between reads: each read is one short
unit of work (``Db.run``). It reads again when the job's Redis notification wakes it (``service.wakeups``)
or after ``SQSNN_SSE_POLL_S`` without one (0.5 s in embedded mode, which has no Redis). sse-starlette sends
a keep-alive comment every ``SQSNN_SSE_KEEPALIVE_S`` and stops the generator when the client disconnects.
A stream ends when the job has finished and every row was sent, or after ``SQSNN_SSE_MAX_S``; clients resume
with ``Last-Event-ID`` (EventSource does so by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse, ServerSentEvent

from service.deps import Db
from service.wakeups import Wakeups
from workers.models import TERMINAL_STATES, Job, JobEvent
from workers.schemas.responses import iso_utc

BATCH = 500
EMBEDDED_POLL_S = 0.5
RETRY_MS = 2000
MAX_EVENT_ID = 2**63 - 1  # ids are BIGINT


def _read(job_id: str, after: int) -> Callable[[Session], tuple[str, list[dict[str, Any]]]]:
    def work(s: Session) -> tuple[str, list[dict[str, Any]]]:
        """The job's state (read first, so a terminal state covers every row read after it) and up to BATCH
        events with id > after."""
        state = s.scalar(select(Job.state).where(Job.id == job_id)) or "failed"
        rows = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after).order_by(JobEvent.id).limit(BATCH)
        ).all()
        return state, [{"id": r.id, "kind": r.kind, "data": r.data, "created_at": iso_utc(r.created_at)} for r in rows]

    return work


def to_sse(ev: dict[str, Any]) -> ServerSentEvent:
    """One SSE frame: ``id``, ``event`` (the event kind) and JSON ``data``."""
    payload = json.dumps({"id": ev["id"], "created_at": ev["created_at"], **ev["data"]})
    return ServerSentEvent(data=payload, event=ev["kind"], id=str(ev["id"]))


async def _frames(db: Db, wakeups: Wakeups, job_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    settings = db.settings
    wait_s = settings.sse_poll_s if wakeups.url else EMBEDDED_POLL_S
    deadline = time.monotonic() + settings.sse_max_s
    last = after
    with wakeups.watch(job_id) as woken:  # registered before the first frame: no wake-up is missed
        yield ServerSentEvent(retry=RETRY_MS)
        while time.monotonic() < deadline:
            woken.clear()
            state, events = await db.run(_read(job_id, last), read_only=True)
            for ev in events:
                yield to_sse(ev)
                last = ev["id"]
            if len(events) == BATCH:
                continue
            if state in TERMINAL_STATES:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=min(wait_s, max(0.0, deadline - time.monotonic())))


def event_response(db: Db, wakeups: Wakeups, job_id: str, after: int) -> EventSourceResponse:
    """The SSE response streaming ``job_id``'s events with id > ``after``."""
    return EventSourceResponse(
        _frames(db, wakeups, job_id, after),
        ping=db.settings.sse_keepalive_s,
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
