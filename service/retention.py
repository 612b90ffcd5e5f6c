"""Retention: checkpoints beyond the newest ``SQSNN_CHECKPOINT_KEEP`` of a job (the best one always stays) and
``progress`` events of jobs finished more than ``SQSNN_PROGRESS_EVENT_RETENTION_S`` ago are deleted.

State, epoch and spike events stay (they are the job's history and its results); so do the newest checkpoints
a resumed job needs. Rows are deleted and committed before their files, so a row never names a missing file.
Run it periodically with ``sqsnn prune``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from workers.models import TERMINAL_STATES, EpochMetric, Job, JobEvent, StoredCheckpoint, utcnow
from workers.settings import Settings


@dataclass(frozen=True)
class Pruned:
    """What one ``prune`` call removed."""

    checkpoints: int
    checkpoint_bytes: int
    progress_events: int


def checkpoints_to_delete(session: Session, keep: int) -> list[StoredCheckpoint]:
    """Checkpoints outside the newest ``keep`` of their job and other than its best (highest test accuracy,
    the later epoch on ties)."""
    crowded = select(StoredCheckpoint.job_id).group_by(StoredCheckpoint.job_id).having(func.count() > keep)
    rows = session.execute(
        select(StoredCheckpoint, EpochMetric.test_accuracy)
        .outerjoin(
            EpochMetric, (EpochMetric.job_id == StoredCheckpoint.job_id) & (EpochMetric.epoch == StoredCheckpoint.epoch)
        )
        .where(StoredCheckpoint.job_id.in_(crowded))
        .order_by(StoredCheckpoint.job_id, StoredCheckpoint.epoch.desc())
    ).all()
    by_job: dict[str, list[tuple[StoredCheckpoint, float]]] = {}
    for ckpt, accuracy in rows:
        by_job.setdefault(ckpt.job_id, []).append((ckpt, -1.0 if accuracy is None else accuracy))
    doomed = []
    for ckpts in by_job.values():
        best = max(ckpts, key=lambda c: (c[1], c[0].epoch))[0]
        doomed += [c for c, _ in ckpts[keep:] if c is not best]
    return doomed


def prune(session: Session, settings: Settings) -> Pruned:
    """Apply the retention settings once; returns what was removed."""
    doomed = checkpoints_to_delete(session, settings.checkpoint_keep)
    paths = [Path(c.path) for c in doomed]
    freed = sum(c.size_bytes for c in doomed)
    if doomed:
        session.execute(delete(StoredCheckpoint).where(StoredCheckpoint.id.in_([c.id for c in doomed])))
    cutoff = utcnow() - timedelta(seconds=settings.progress_event_retention_s)
    finished = select(Job.id).where(Job.state.in_(TERMINAL_STATES), Job.finished_at < cutoff)
    events = session.execute(delete(JobEvent).where(JobEvent.kind == "progress", JobEvent.job_id.in_(finished)))
    session.commit()
    for path in paths:
        path.unlink(missing_ok=True)
    return Pruned(checkpoints=len(doomed), checkpoint_bytes=freed, progress_events=int(getattr(events, "rowcount", 0)))
