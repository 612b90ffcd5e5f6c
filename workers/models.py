"""ORM models: the database is the state of record for jobs, their events, models and hardware runs.

They live in ``workers`` (not ``service``) because the workers write them and dependencies point
``service → workers``; the API imports them from here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from workers.db import Base

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKind = Literal["train", "infer"]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")
TERMINAL_STATES: tuple[JobState, ...] = ("succeeded", "failed", "cancelled")
JOB_STATES: tuple[JobState, ...] = get_args(JobState)


def utcnow() -> datetime:
    """Timezone-aware current UTC time."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random UUID4 as text (portable across PostgreSQL and SQLite)."""
    return str(uuid.uuid4())


# BigInteger autoincrement primary keys need the INTEGER affinity on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class ApiKey(Base):
    """A bearer API key; only its HMAC-SHA256 digest is stored."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


STORED_BYTES_SQL = "length(CAST(spec AS TEXT)) + coalesce(length(CAST(result AS TEXT)), 0)"
"""A job's stored bytes (its spec and result as JSON text), computed by the database on every write (a stored
generated column: PostgreSQL and SQLite), so the storage quota sums an indexed integer instead of every spec."""


class Job(Base):
    """A training or inference job and its current state."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_owner_state_created", "owner", "state", "created_at", "id"),  # 0003: filtered lists, limits
        Index("ix_jobs_owner_stored_bytes", "owner", "stored_bytes"),  # 0004: the quota's sum, from the index
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    substate: Mapped[str | None] = mapped_column(String(32))
    provider_state: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    backend: Mapped[str] = mapped_column(String(200))
    backend_used: Mapped[str | None] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    input_model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="SET NULL"))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, Computed(STORED_BYTES_SQL, persisted=True))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    shots: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    qpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # billed QPU seconds (IBM), summed
    estimated_shots: Mapped[int | None] = mapped_column(BigInteger)  # reserved against the owner's daily limit
    estimated_cost_usd: Mapped[float | None] = mapped_column(Float)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # run at or after this time
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    epochs: Mapped[list[EpochMetric]] = relationship(order_by="EpochMetric.epoch", viewonly=True)
    submissions: Mapped[list[HardwareSubmission]] = relationship(order_by="HardwareSubmission.id", viewonly=True)


class JobEvent(Base):
    """One stored event of a job (state change, progress, metrics, spikes); the SSE stream replays these."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)  # 0003: SSE reads
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EpochMetric(Base):
    """Metrics of one finished training epoch (1-based)."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    train_accuracy: Mapped[float] = mapped_column(Float)
    test_accuracy: Mapped[float] = mapped_column(Float)
    spike_rates: Mapped[list[float]] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StoredCheckpoint(Base):
    """A training checkpoint file taken after ``epoch``; ``sha256`` guards it against corruption."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_checkpoints_job_epoch"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    """A trained model file produced by a training job."""

    __tablename__ = "models"
    __table_args__ = (Index("ix_models_owner_created", "owner", "created_at", "id"),)  # 0003: listing
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(100), index=True)
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL", use_alter=True, name="fk_models_job_id_jobs")
    )
    name: Mapped[str | None] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class HardwareSubmission(Base):
    """One provider job (IBM Runtime / Braket / local emulation of them) submitted for a job.

    ``status`` is the state machine's (:mod:`workers.hardware`): ``pending`` (row written, provider submit
    not yet confirmed), ``submitted`` / ``queued`` / ``running`` (at the provider), ``fetched`` (result
    stored in ``result``, next step not yet taken), ``done``, ``failed``, ``cancelled``.
    """

    __tablename__ = "hardware_submissions"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str] = mapped_column(String(32))
    backend: Mapped[str] = mapped_column(String(200))
    provider_job_id: Mapped[str | None] = mapped_column(String(200), index=True)
    session_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_token: Mapped[str] = mapped_column(String(64), unique=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    provider_state: Mapped[str | None] = mapped_column(String(64))
    shots: Mapped[int] = mapped_column(BigInteger, default=0)
    usage_seconds: Mapped[float | None] = mapped_column(Float)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # fetched spikes, packed (workers.spikes)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # transient provider errors retried so far
    last_error: Mapped[str | None] = mapped_column(Text)  # redacted
    polled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class JobChunk(Base):
    """One finished chunk of samples ``start:stop`` of an inference job: a resumed job skips it."""

    __tablename__ = "job_chunks"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_job_chunks_job_index"),)
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    stop: Mapped[int] = mapped_column(Integer)
    predictions: Mapped[list[int]] = mapped_column(JSON)
    spikes: Mapped[list[list[str]]] = mapped_column(JSON)  # per layer: packed (workers.spikes) per sample
    shots: Mapped[int] = mapped_column(BigInteger, default=0)
    backend: Mapped[str] = mapped_column(String(200))
    fallback: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SpendLimit(Base):
    """An owner's daily hardware spend limits (None = the settings' default), over a rolling 24 hours."""

    __tablename__ = "spend_limits"
    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    max_shots_per_day: Mapped[int | None] = mapped_column(BigInteger)
    max_usd_per_day: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
