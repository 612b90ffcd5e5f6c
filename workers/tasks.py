"""Celery tasks. Each takes a job id; the database row holds everything else.

``run_job`` runs simulator work to completion; it is idempotent under redelivery thanks to the job lease
(``workers.context.claim``) and resumes training from the newest checkpoint. ``reap_stale`` re-enqueues
jobs whose lease expired (their worker died) or that were never enqueued. Transient errors
(connection drops, database hiccups) are retried with exponential backoff.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from celery.exceptions import MaxRetriesExceededError
from sqlalchemy import or_, select
from sqlalchemy.exc import OperationalError

from workers.artifacts import ArtifactCorrupted
from workers.celery_app import TASK_POLL_HARDWARE, TASK_REAP_STALE, TASK_RUN_JOB, enqueue
from workers.context import JobCancelled, JobContext, LeaseLost, claim, sessions_for, worker_token
from workers.db import session_scope
from workers.models import Job, utcnow
from workers.settings import Settings

log = logging.getLogger(__name__)

TRANSIENT = (ConnectionError, TimeoutError, OperationalError)


def _settings(task: Task) -> Settings:
    settings: Settings = task.app.conf.sqsnn_settings
    return settings


@shared_task(bind=True, name=TASK_RUN_JOB, max_retries=None)
def run_job(self: Task, job_id: str) -> str:
    """Run one simulator job to a terminal state (or hand it over when another worker owns it)."""
    from workers.hardware import start_hardware
    from workers.inference import InvalidJob, run_inference
    from workers.routing import is_hardware
    from workers.training import run_training

    settings = _settings(self)
    token = worker_token(self.request.id or job_id)
    if not claim(settings, job_id, token):
        return "skipped"
    ctx = JobContext(settings, job_id, token)
    try:
        job = ctx.load()
        if job.kind == "train":
            run_training(ctx)
        elif is_hardware(job.backend):
            start_hardware(ctx)  # submits and returns; poll_hardware advances the job
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


@shared_task(bind=True, name=TASK_REAP_STALE)
def reap_stale(self: Task) -> int:
    """Re-enqueue running jobs whose lease expired and queued jobs never handed to the broker."""
    settings = _settings(self)
    now = utcnow()
    with session_scope(sessions_for(settings)) as s:
        rows = s.execute(
            select(Job.id, Job.queue).where(
                or_(
                    (Job.state == "running") & (Job.lease_expires_at < now),
                    (Job.state == "queued") & Job.enqueued_at.is_(None),
                    (Job.state == "queued") & (Job.enqueued_at < now - timedelta(seconds=settings.lease_s * 10)),
                )
            )
        ).all()
        for job_id, queue in rows:
            enqueue(self.app, job_id, queue)
            s.get(Job, job_id).enqueued_at = now  # type: ignore[union-attr]
        s.commit()
    return len(rows)


@shared_task(bind=True, name=TASK_POLL_HARDWARE)
def poll_hardware(self: Task) -> int:
    """Advance hardware jobs: check every open provider submission once (never blocks on a queue)."""
    from workers.hardware import poll_open_submissions

    return poll_open_submissions(_settings(self))
