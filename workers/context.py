"""What a running job needs: its database rows, a lease that marks it alive, events and cancellation."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from workers.db import make_sessionmaker, session_scope
from workers.events import add_event, commit_and_publish, set_state
from workers.heartbeat import LOST
from workers.models import TERMINAL_STATES, Job, utcnow
from workers.settings import Settings

QPU_SUBSTATES = ("waiting_qpu", "executing_qpu")


class JobCancelled(Exception):
    """Raised inside a job when its owner asked to cancel it."""


class LeaseLost(Exception):
    """Raised inside a job when another worker has taken it over (this one was presumed dead)."""


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored time is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


@lru_cache(maxsize=2)
def sessions_for(settings: Settings) -> sessionmaker[Session]:
    """One session factory (and engine) per process and settings."""
    return make_sessionmaker(settings)


def worker_token(task_id: str) -> str:
    """Lease owner token: this process and this task delivery's id."""
    return f"{socket.gethostname()}:{os.getpid()}:{task_id}"


def claim(settings: Settings, job_id: str, token: str) -> bool:
    """Take the job's lease if it is queued, or running with an expired lease (its worker died).

    Returns False when the job is finished, cancelled, or alive in another worker.
    """
    factory = sessions_for(settings)
    with session_scope(factory) as s:
        job = s.get(Job, job_id, with_for_update=True)
        if job is None or job.state in TERMINAL_STATES:
            return False
        now = utcnow()
        if job.state == "running" and job.lease_owner is None and job.substate in QPU_SUBSTATES:
            return False  # submitted to a QPU: the hardware poller owns it now (and cancels the provider job)
        expires = aware(job.lease_expires_at)
        if job.state == "running" and job.lease_owner not in (None, token) and expires and expires > now:
            return False  # alive in another worker, which sees the cancel request itself
        resumed = job.state == "running"
        if job.cancel_requested:
            reason = "cancelled by its owner" if resumed else "cancelled before it started"
            ev = set_state(s, job, "cancelled", reason=reason)
            commit_and_publish(s, settings.pubsub_url, [ev])
            return False
        job.lease_owner = token
        job.lease_expires_at = now + timedelta(seconds=settings.lease_s)
        job.attempts += 1
        ev = set_state(s, job, "running", substate="starting", attempt=job.attempts, resumed=resumed)
        commit_and_publish(s, settings.pubsub_url, [ev])
        return True


@dataclass
class JobContext:
    """Handle a task passes to the job runner; every method commits its own short transaction."""

    settings: Settings
    job_id: str
    token: str
    _last_check: float = field(default=0.0)
    _last_progress: float = field(default=0.0)
    _finished: bool = field(default=False)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory."""
        return sessions_for(self.settings)

    def load(self) -> Job:
        """A detached copy of the job row."""
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id)
            assert job is not None
            s.expunge(job)
            return job

    def emit(self, kind: str, data: dict[str, Any], **job_updates: Any) -> None:
        """Store an event (and optional job column updates), commit, publish."""
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id)
            assert job is not None
            for k, v in job_updates.items():
                setattr(job, k, v)
            self._renew(job)
            ev = add_event(s, self.job_id, kind, data)
            commit_and_publish(s, self.settings.pubsub_url, [ev])

    def progress(self, data: dict[str, Any]) -> None:
        """A per-batch progress event, throttled to one per ``progress_interval_s``."""
        now = time.monotonic()
        if now - self._last_progress >= self.settings.progress_interval_s:
            self._last_progress = now
            self.emit("progress", data)

    def substate(self, substate: str, **extra: Any) -> None:
        """Move to another running sub-state (e.g. compiling, executing_qpu, learning)."""
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id)
            assert job is not None
            self._renew(job)
            ev = set_state(s, job, "running", substate=substate, **extra)
            commit_and_publish(s, self.settings.pubsub_url, [ev])

    def finish(self, state: str, *, reason: str | None = None, **job_updates: Any) -> bool:
        """Move to a terminal state, releasing the lease. Compare-and-set: only while this worker holds the
        lease and the job is not final; returns False (changing nothing) otherwise."""
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id, with_for_update=True)
            assert job is not None
            if job.state in TERMINAL_STATES or job.lease_owner != self.token:
                return False
            for k, v in job_updates.items():
                setattr(job, k, v)
            if state == "succeeded":
                job.progress = 1.0
            ev = set_state(s, job, state, reason=reason)
            commit_and_publish(s, self.settings.pubsub_url, [ev])
            self._finished = True
            return True

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Keep the lease fresh while the block runs, from a child process (:mod:`workers.heartbeat`; a
        simulator's long C++ calls would stall a thread); raises LeaseLost after the block when the lease was
        taken over before the job finished."""
        env = {**os.environ, "SQSNN_HEARTBEAT_DATABASE_URL": self.settings.sqlalchemy_url}
        cmd = [sys.executable, "-m", "workers.heartbeat", self.job_id, self.token, str(self.settings.lease_s)]
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
        try:
            yield
        finally:
            assert child.stdin is not None
            child.stdin.close()
            status = child.wait()
        if status == LOST and not self._finished:
            raise LeaseLost(f"job {self.job_id} was taken over while it ran")

    def check(self, *, force: bool = False) -> None:
        """Raise JobCancelled / LeaseLost when due (polled at most every ``cancel_poll_s`` unless ``force``);
        renew the lease."""
        now = time.monotonic()
        if not force and now - self._last_check < self.settings.cancel_poll_s:
            return
        self._last_check = now
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id, with_for_update=True)
            assert job is not None
            if job.lease_owner != self.token:
                raise LeaseLost(f"job {self.job_id} is now leased by {job.lease_owner}")
            if job.cancel_requested:
                raise JobCancelled()
            self._renew(job)
            s.commit()

    def should_stop(self) -> bool:
        """``train``'s should_stop hook: True when the job was cancelled or taken over."""
        try:
            self.check()
        except (JobCancelled, LeaseLost):
            return True
        return False

    def _renew(self, job: Job) -> None:
        if job.lease_owner == self.token:
            job.lease_expires_at = utcnow() + timedelta(seconds=self.settings.lease_s)
