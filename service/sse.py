"""Server-Sent Events of one job, replayed from the stored event rows.

The database is the only source of events; Redis pub/sub (when configured) just wakes the stream up early,
so a missed notification costs at most one poll interval and the order is always the rows' id order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from workers.events import channel
from workers.models import TERMINAL_STATES, Job, JobEvent

POLL_S = 1.0
KEEPALIVE_S = 15.0
BATCH = 500


def _fetch(app: FastAPI, job_id: str, after: int) -> tuple[str, list[dict[str, Any]]]:
    """The job's state (read first) and up to BATCH events with id > after."""
    with app.state.sessions() as s:
        state = s.scalar(select(Job.state).where(Job.id == job_id)) or "failed"
        rows = s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.id > after).order_by(JobEvent.id).limit(BATCH)
        ).all()
        return state, [
            {"id": r.id, "kind": r.kind, "data": r.data, "created_at": r.created_at.isoformat()} for r in rows
        ]


def format_event(ev: dict[str, Any]) -> str:
    """One SSE frame: ``id``, ``event`` (the event kind) and JSON ``data``."""
    payload = json.dumps({"id": ev["id"], "created_at": ev["created_at"], **ev["data"]})
    return f"id: {ev['id']}\nevent: {ev['kind']}\ndata: {payload}\n\n"


async def event_stream(app: FastAPI, job_id: str, after: int, request: Request) -> AsyncIterator[str]:
    """Yield SSE frames for events after ``after`` until the job is finished and fully replayed."""
    pubsub = None
    client = None
    if app.state.settings.pubsub_url:
        client = aioredis.from_url(app.state.settings.pubsub_url)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel(job_id))
    last = after
    last_sent = time.monotonic()
    try:
        yield "retry: 2000\n\n"
        while True:
            state, events = await run_in_threadpool(_fetch, app, job_id, last)
            for ev in events:
                yield format_event(ev)
                last = ev["id"]
            if events:
                last_sent = time.monotonic()
            if len(events) == BATCH:
                continue
            if state in TERMINAL_STATES:
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
            if pubsub is not None:
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_S)
            else:
                await asyncio.sleep(POLL_S / 2)
    finally:
        if pubsub is not None:
            await pubsub.aclose()
        if client is not None:
            await client.aclose()


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Client side: turn SSE lines into ``{"id", "event", "data"}`` dicts (``data`` JSON-decoded)."""
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in current:
                yield current
            current = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                current["data"] = json.loads(value)
            elif name in ("id", "event"):
                current[name] = value
