"""Job events: stored as rows first (state of record), then announced on Redis pub/sub for live streams."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy.orm import Session

from workers.models import Job, JobEvent, utcnow

log = logging.getLogger(__name__)


def channel(job_id: str) -> str:
    """The Redis pub/sub channel announcing new events of one job."""
    return f"sqsnn:job:{job_id}"


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def add_event(session: Session, job_id: str, kind: str, data: dict[str, Any]) -> JobEvent:
    """Add an event row to the session (the caller commits, then calls ``publish``)."""
    ev = JobEvent(job_id=job_id, kind=kind, data=data, created_at=utcnow())
    session.add(ev)
    return ev


def set_state(
    session: Session,
    job: Job,
    state: str,
    *,
    substate: str | None = None,
    reason: str | None = None,
    **extra: Any,
) -> JobEvent:
    """Change a job's state/substate and add the matching event row (the caller commits)."""
    now = utcnow()
    job.state = state
    job.substate = substate
    if state == "running" and job.started_at is None:
        job.started_at = now
    if state in ("succeeded", "failed", "cancelled"):
        job.finished_at = now
        job.lease_owner = None
        job.lease_expires_at = None
    if reason is not None:
        job.failure_reason = reason
    data: dict[str, Any] = {"state": state, "substate": substate, **extra}
    if reason is not None:
        data["reason"] = reason
    return add_event(session, job.id, "state", data)


def publish(pubsub_url: str | None, job_id: str, event_ids: list[int]) -> None:
    """Announce committed events; failures are logged only (streams also poll the database)."""
    if not pubsub_url or not event_ids:
        return
    try:
        _redis(pubsub_url).publish(channel(job_id), json.dumps({"ids": event_ids}))
    except redis.RedisError as exc:
        log.warning("could not publish events of job %s: %s", job_id, exc)


def commit_and_publish(session: Session, pubsub_url: str | None, events: list[JobEvent]) -> None:
    """Commit the session, then publish the ids of ``events`` (all of one job)."""
    session.commit()
    if events:
        publish(pubsub_url, events[0].job_id, [e.id for e in events])
