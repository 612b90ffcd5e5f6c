"""The rows of the QPU job state machine: submission statuses, keys, row locks and when to look again.

One ``HardwareSubmission`` row per layer of a job; its status moves
``pending -> submitted <-> queued <-> running -> fetched -> done`` (or ``failed`` / ``cancelled``). A
transition holds the row with ``SELECT ... FOR UPDATE SKIP LOCKED`` (a second task for the same row skips
it) and then the job row, so no step is taken twice.
"""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.context import sessions_for
from workers.db import session_scope
from workers.models import HardwareSubmission, Job, utcnow
from workers.routing import kind_of
from workers.settings import Settings

OPEN = ("pending", "submitted", "queued", "running", "fetched")
AT_PROVIDER = ("submitted", "queued", "running")


class ProviderStopped(Exception):
    """The job must stop: ``state`` (failed / cancelled) with ``reason``; ``cancel`` the provider job."""

    def __init__(self, state: str, reason: str, *, cancel: bool = True) -> None:
        super().__init__(reason)
        self.state, self.reason, self.cancel = state, reason, cancel


def provider_key(job_id: str, step: int) -> str:
    """The de-duplication key of layer ``step`` of a job (the provider's job tag / client token source)."""
    return f"sqsnn/{job_id}/{step}"


def new_submission(job_id: str, step: int, backend: str, payload: dict[str, Any] | None) -> HardwareSubmission:
    """The ``pending`` row of layer ``step`` (``payload``: what later layers need, on layer 0 only)."""
    return HardwareSubmission(
        job_id=job_id,
        step=step,
        provider=kind_of(backend),
        backend=backend,
        idempotency_token=hashlib.sha256(provider_key(job_id, step).encode()).hexdigest(),
        tags=[],
        status="pending",
        payload=payload,
        polled_at=utcnow(),
    )


def locked(s: Session, sub_id: int) -> tuple[HardwareSubmission, Job] | None:
    """The submission (skipped when another transaction holds it) and its job, both locked; None when the
    submission is held elsewhere or no longer open."""
    sub = s.scalar(select(HardwareSubmission).where(HardwareSubmission.id == sub_id).with_for_update(skip_locked=True))
    if sub is None or sub.status not in OPEN:
        return None
    job = s.scalar(select(Job).where(Job.id == sub.job_id).with_for_update())
    assert job is not None
    return sub, job


def row_of(s: Session, job_id: str, step: int) -> HardwareSubmission:
    """The submission row of layer ``step`` of a job."""
    row = s.scalar(
        select(HardwareSubmission).where(HardwareSubmission.job_id == job_id, HardwareSubmission.step == step)
    )
    assert row is not None, f"job {job_id} has no submission for layer {step}"
    return row


def carry_of(s: Session, sub: HardwareSubmission) -> dict[str, Any]:
    """What layer 0's row carries for the whole job (encoded inputs, seed, encoder, costs, backend options)."""
    first = sub if sub.step == 0 else row_of(s, sub.job_id, 0)
    return dict(first.payload or {})


def submitted_job(sub: HardwareSubmission) -> Any:
    """The backend's ``SubmittedJob`` handle stored in the row when it was submitted."""
    from backends.base import SubmittedJob

    fields = dict((sub.payload or {})["submitted"])
    return SubmittedJob(**{**fields, "chunks": [tuple(c) for c in fields["chunks"]]})


def poll_delay(settings: Settings) -> float:
    """Seconds until the next look at a waiting provider job: the poll interval, +-20 % jitter."""
    return settings.hardware_poll_interval_s * random.uniform(0.8, 1.2)


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based) of a failed provider call: the poll interval doubled per
    attempt, capped at ``provider_backoff_max_s``, with full jitter over its upper half."""
    cap = min(settings.provider_backoff_max_s, settings.hardware_poll_interval_s * 2 ** (attempt - 1))
    return cap * random.uniform(0.5, 1.0)


def stale_submissions(settings: Settings) -> list[int]:
    """Open submissions nobody looked at for ``hardware_stale_s`` (their task was lost): send it again."""
    cutoff = utcnow() - timedelta(seconds=settings.hardware_stale_s)
    with session_scope(sessions_for(settings)) as s:
        return list(
            s.scalars(
                select(HardwareSubmission.id).where(
                    HardwareSubmission.status.in_(OPEN),
                    (HardwareSubmission.polled_at.is_(None)) | (HardwareSubmission.polled_at < cutoff),
                )
            )
        )
