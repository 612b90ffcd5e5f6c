"""Celery tasks. Each takes a job or submission id; the database rows hold everything else.

``run_job`` runs simulator work to completion; it is idempotent under redelivery thanks to the job lease
(``workers.context.claim``), resumes training from the newest checkpoint and inference from its last
finished chunk. On a QPU it only writes the first provider submission; ``advance_submission`` then runs
the state machine of :mod:`workers.hardware`, re-scheduling itself while the provider works. The periodic
tasks (``sqsnn.periodic`` queue): ``poll_hardware`` re-sends the task of submissions nobody looked at for
too long, ``reap_stale`` re-enqueues jobs whose lease expired (their worker died), jobs never enqueued
and jobs whose ``not_before`` came. Transient errors (connection drops, database hiccups) are retried with
exponential backoff.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import MaxRetriesExceededError
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.exc import OperationalError

from workers.artifacts import ArtifactCorrupted
from workers.celery_app import (
    TASK_ADVANCE_SUBMISSION,
    TASK_POLL_HARDWARE,
    TASK_REAP_STALE,
    TASK_RUN_JOB,
    dispatch_submission,
    enqueue,
)
from workers.context import QPU_SUBSTATES, JobCancelled, JobContext, LeaseLost, aware, claim, sessions_for, worker_token
from workers.db import session_scope
from workers.events import commit_and_publish, publish, set_state
from workers.models import HardwareSubmission, Job, utcnow
from workers.settings import Settings

log = logging.getLogger(__name__)

TRANSIENT = (ConnectionError, TimeoutError, OperationalError)


def _settings(task: Task) -> Settings:
    settings: Settings = task.app.conf.sqsnn_settings
    return settings


def _not_due(settings: Settings, job_id: str) -> bool:
    """True (and the job handed back to the reaper) while a queued job's ``not_before`` lies ahead."""
    from workers.schemas.requests import parse_not_before

    with session_scope(sessions_for(settings)) as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.state != "queued":
            return False
        if job.not_before is None:
            job.not_before = parse_not_before(job.spec)
        due = aware(job.not_before)
        if due is None or due <= utcnow():
            s.commit()
            return False
        job.enqueued_at = None  # reap_stale enqueues it once due (it looks for the "scheduled" sub-state)
        ev = set_state(s, job, "queued", substate="scheduled", not_before=due.isoformat())
        commit_and_publish(s, settings.pubsub_url, [ev])
        return True


@shared_task(bind=True, name=TASK_RUN_JOB, max_retries=None)
def run_job(self: Task, job_id: str) -> str:
    """Run one simulator job to a terminal state, or start a QPU job (or hand over when another worker
    owns it, or wait when it is scheduled for later)."""
    from workers.hardware import runs_on_qpu, start_hardware
    from workers.inference import InvalidJob, run_inference
    from workers.training import run_training

    settings = _settings(self)
    if _not_due(settings, job_id):
        return "scheduled"
    token = worker_token(self.request.id or job_id)
    if not claim(settings, job_id, token):
        return "skipped"
    ctx = JobContext(settings, job_id, token)
    try:
        job = ctx.load()
        if job.kind == "infer" and runs_on_qpu(settings, job.backend):
            start_hardware(ctx, lambda sub_id: dispatch_submission(self.app, sub_id))
            return "submitted"
        with ctx.heartbeat():  # the lease stays fresh however long a chunk, batch or evaluation takes
            if job.kind == "train":
                run_training(ctx)
            else:
                run_inference(ctx)
        return "done"
    except JobCancelled:
        ctx.finish("cancelled", reason="cancelled by its owner")
        return "cancelled"
    except LeaseLost as exc:
        log.warning("%s", exc)
        return "lease-lost"
    except TRANSIENT as exc:
        try:
            raise self.retry(
                exc=exc,
                countdown=min(600, 2 ** (self.request.retries + 1)),
                max_retries=settings.task_max_retries,
            )
        except MaxRetriesExceededError:
            ctx.finish("failed", reason=f"gave up after {settings.task_max_retries} retries: {exc}")
            return "failed"
    except (InvalidJob, ArtifactCorrupted, ValueError) as exc:
        ctx.finish("failed", reason=str(exc))
        return "failed"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        ctx.finish("failed", reason=f"{type(exc).__name__}: {exc}")
        return "failed"


@shared_task(bind=True, name=TASK_ADVANCE_SUBMISSION, max_retries=None)
def advance_submission(self: Task, submission_id: int) -> str:
    """Advance one provider submission (and the job's next layers) as far as it goes now; while the
    provider works, look again later (``self.retry`` with a jittered countdown or backoff)."""
    from workers.hardware import advance, backoff

    settings = _settings(self)
    try:
        current, wait_s = advance(settings, submission_id)
    except TRANSIENT as exc:  # the database or broker dropped; the row is as it was
        log.warning("submission %s: %s; retrying", submission_id, exc)
        current, wait_s = submission_id, backoff(settings, self.request.retries + 1)
    if wait_s is None:
        return "idle"
    raise self.retry(args=[current], countdown=wait_s, max_retries=None)


@shared_task(bind=True, name=TASK_REAP_STALE)
def reap_stale(self: Task) -> int:
    """Re-enqueue running jobs whose lease expired, and queued jobs never handed to the broker, scheduled ones,
    or ones handed over long ago, once their ``not_before`` has come; fail QPU jobs left without an open
    submission."""
    from workers.hardware import OPEN

    settings = _settings(self)
    now = utcnow()
    due = or_(Job.not_before.is_(None), Job.not_before <= now)
    open_sub = exists().where(HardwareSubmission.job_id == Job.id, HardwareSubmission.status.in_(OPEN))
    with session_scope(sessions_for(settings)) as s:
        rows = s.execute(
            select(Job.id, Job.queue).where(
                or_(
                    (Job.state == "running") & (Job.lease_expires_at < now),
                    (Job.state == "queued") & Job.enqueued_at.is_(None) & due,
                    (Job.state == "queued") & (Job.substate == "scheduled") & due,
                    (Job.state == "queued") & (Job.enqueued_at < now - timedelta(seconds=settings.lease_s * 10)) & due,
                )
            )
        ).all()
        for job_id, queue in rows:
            enqueue(self.app, job_id, queue)
            job = s.get(Job, job_id)
            assert job is not None
            job.enqueued_at = now
            if job.state == "queued":
                job.substate = None  # a scheduled job is handed to the broker now
        s.commit()
        orphans = s.scalars(
            select(Job)
            .where(and_(Job.state == "running", Job.lease_owner.is_(None), Job.substate.in_(QPU_SUBSTATES), ~open_sub))
            .with_for_update(skip_locked=True)
        ).all()
        events = [
            set_state(s, job, "failed", reason="no open provider submission is left for this QPU job")
            for job in orphans
        ]
        s.commit()
    for ev in events:
        publish(settings.pubsub_url, ev.job_id, [ev.id])
    return len(rows) + len(events)


@shared_task(bind=True, name=TASK_POLL_HARDWARE)
def poll_hardware(self: Task) -> int:
    """Re-send ``advance_submission`` for open provider submissions nobody looked at for too long."""
    from workers.hardware import stale_submissions

    ids = stale_submissions(_settings(self))
    for sub_id in ids:
        dispatch_submission(self.app, sub_id)
    return len(ids)
