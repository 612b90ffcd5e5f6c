"""Response bodies of the REST API (pydantic v2). Request bodies: :mod:`workers.schemas.requests`.

Timestamps are UTC and written as ISO 8601 with their offset (``2026-01-31T12:00:00.123456+00:00``), in
responses and in SSE events alike, whatever the database returns (SQLite drops the zone: its values are UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from workers.models import JobState


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken as UTC (the service stores only UTC times)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """``value`` as ISO 8601 in UTC with its offset."""
    return as_utc(value).isoformat()


Timestamp = Annotated[
    datetime,
    AfterValidator(as_utc),
    PlainSerializer(iso_utc, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Out(BaseModel):
    """Base of response models, readable from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class EpochOut(Out):
    """Metrics of one finished epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    spike_rates: list[float]
    seconds: float


class HardwareOut(Out):
    """One provider job submitted for this job (never any credential)."""

    provider: str
    backend: str
    provider_job_id: str | None
    session_id: str | None
    status: str
    provider_state: str | None
    shots: int
    usage_seconds: float | None
    cost_usd: float | None
    created_at: Timestamp


class JobOut(Out):
    """A job: state of record, progress and metrics so far."""

    id: str
    kind: Literal["train", "infer"]
    state: JobState
    substate: str | None
    provider_state: str | None
    progress: float = Field(description="fraction done, 0..1")
    backend: str = Field(description="backend requested")
    backend_used: str | None
    queue: str
    spec: dict[str, Any]
    idempotency_key: str | None
    cancel_requested: bool
    attempts: int
    shots: int
    cost_usd: float
    failure_reason: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    updated_at: Timestamp
    epochs: list[EpochOut]
    hardware: list[HardwareOut] = Field(validation_alias="submissions")


class JobSummary(Out):
    """A job in a listing: state and progress, without its spec, metrics or hardware runs
    (``GET /v1/jobs/{id}`` has those)."""

    id: str
    kind: Literal["train", "infer"]
    state: JobState
    substate: str | None
    progress: float = Field(description="fraction done, 0..1")
    backend: str = Field(description="backend requested")
    backend_used: str | None
    idempotency_key: str | None
    failure_reason: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class JobPage(BaseModel):
    """One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[JobSummary]
    next_cursor: str | None = Field(description="cursor of the next page; null on the last page")


class JobResult(BaseModel):
    """The result of a succeeded job."""

    job_id: str
    kind: Literal["train", "infer"]
    result: dict[str, Any]


class ModelOut(Out):
    """A trained model."""

    id: str
    name: str | None
    job_id: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    test_accuracy: float | None
    sha256: str
    size_bytes: int
    created_at: Timestamp


class ModelSummary(Out):
    """A model in a listing (``GET /v1/models/{id}`` adds its configuration and metrics)."""

    id: str
    name: str | None
    job_id: str | None
    test_accuracy: float | None
    sha256: str
    size_bytes: int
    created_at: Timestamp


class ModelPage(BaseModel):
    """One page of models, newest first."""

    items: list[ModelSummary]
    next_cursor: str | None = Field(description="cursor of the next page; null on the last page")


class BackendOut(BaseModel):
    """A backend of the registry: what it can do, whether it is usable now, whether credentials are set."""

    name: str
    kind: Literal["simulator", "hardware"]
    queue: str
    capabilities: dict[str, Any] = Field(description="what the backend can do (mid-circuit measurement, ...)")
    availability: dict[str, Any] = Field(description="`available` (null: checked at submission) and why")
    credentials_configured: bool


class Health(BaseModel):
    """Liveness / readiness answer."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
