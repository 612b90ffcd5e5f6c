"""The Celery application: Redis broker in deployment, file-system broker when embedded.

Queues: ``sqsnn.sim`` (simulator work, runs to completion), ``sqsnn.hw`` (the QPU state machine: one
short ``advance_submission`` task per provider submission, re-scheduling itself while the provider works)
and ``sqsnn.periodic`` (beat's ``poll_hardware`` and ``reap_stale``; each message expires after one
interval, and a worker consuming only this queue runs them, so long simulator work never starves them).
Tasks are acknowledged late, so a message whose worker died is delivered again (Redis: after
``visibility_timeout``), and every job also carries a database lease that ``reap_stale`` uses to
re-enqueue orphans.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from workers.settings import Settings

SIM_QUEUE = "sqsnn.sim"
HW_QUEUE = "sqsnn.hw"
PERIODIC_QUEUE = "sqsnn.periodic"
TASK_RUN_JOB = "workers.tasks.run_job"
TASK_POLL_HARDWARE = "workers.tasks.poll_hardware"
TASK_REAP_STALE = "workers.tasks.reap_stale"
TASK_ADVANCE_SUBMISSION = "workers.tasks.advance_submission"


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``."""
    app = Celery("sqsnn", broker=settings.celery_broker_url, include=["workers.tasks"], set_as_current=False)
    transport_options: dict[str, object] = {
        "visibility_timeout": settings.visibility_timeout_s,
        # sweep for messages of dead workers every few seconds (one cheap sorted-set scan)
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
        "unacked_restore_throttle": 1,
    }
    if settings.celery_broker_url.startswith("filesystem://"):
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
        }
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=SIM_QUEUE,
        task_queues=[Queue(SIM_QUEUE), Queue(HW_QUEUE), Queue(PERIODIC_QUEUE)],
        task_routes={
            TASK_RUN_JOB: {"queue": SIM_QUEUE},
            TASK_ADVANCE_SUBMISSION: {"queue": HW_QUEUE},
            TASK_POLL_HARDWARE: {"queue": PERIODIC_QUEUE},
            TASK_REAP_STALE: {"queue": PERIODIC_QUEUE},
        },
        beat_schedule={
            "poll-hardware": {
                "task": TASK_POLL_HARDWARE,
                "schedule": settings.hardware_poll_interval_s,
                "options": {"queue": PERIODIC_QUEUE, "expires": settings.hardware_poll_interval_s},
            },
            "reap-stale": {
                "task": TASK_REAP_STALE,
                "schedule": settings.reaper_interval_s,
                "options": {"queue": PERIODIC_QUEUE, "expires": settings.reaper_interval_s},
            },
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.conf.sqsnn_settings = settings
    return app


def enqueue(app: Celery, job_id: str, queue: str) -> None:
    """Send ``run_job`` for a committed job row (never before the commit that created it)."""
    app.send_task(TASK_RUN_JOB, args=[job_id], queue=queue)


def dispatch_submission(app: Celery, submission_id: int) -> None:
    """Send ``advance_submission`` for a committed hardware submission row."""
    app.send_task(TASK_ADVANCE_SUBMISSION, args=[submission_id], queue=HW_QUEUE)
