"""Runtime settings shared by the API and the workers (environment variables prefixed ``SQSNN_``).

With neither ``SQSNN_DATABASE_URL`` nor ``SQSNN_BROKER_URL`` set the service runs *embedded*: SQLite
and Celery's file-system broker under ``SQSNN_HOME``. In deployment both point at PostgreSQL and Redis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "change-me-development-only"

Environment = Literal["development", "test", "production"]


class Settings(BaseSettings):
    """Service configuration. Durations are in seconds."""

    model_config = SettingsConfigDict(
        env_prefix="SQSNN_", env_file=".env", extra="ignore", secrets_dir=None, frozen=True
    )

    environment: Environment = "development"
    home: Path = Field(default_factory=lambda: Path.home() / ".sqsnn")
    database_url: str | None = None
    broker_url: str | None = None
    redis_url: str | None = None
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    max_active_jobs: int = Field(default=4, ge=1)
    visibility_timeout_s: int = Field(default=7200, ge=1)
    lease_s: float = Field(default=60.0, gt=0)
    hardware_poll_interval_s: float = Field(default=30.0, gt=0)
    reaper_interval_s: float = Field(default=30.0, gt=0)
    cancel_poll_s: float = Field(default=0.5, gt=0)
    progress_interval_s: float = Field(default=0.5, ge=0)
    task_max_retries: int = Field(default=5, ge=0)
    qpu_backends: str = Field(
        default="",
        description="comma-separated backend kinds that also run through the QPU job state machine (submit, "
        "persist, poll) besides ibm and braket: `kind` (a registry kind, e.g. `ibm-local`) or `kind=module:Class` "
        "(a backends.base.Backend class constructed as Class(target, options): the extension point for "
        "loopback and test providers)",
    )
    provider_max_retries: int = Field(default=8, ge=0)
    provider_backoff_max_s: float = Field(default=300.0, gt=0)
    job_memory_bytes: int = Field(default=4 << 30, ge=1 << 20)
    max_job_seconds: float = Field(default=6 * 3600.0, gt=0)
    owner_max_shots_per_day: int | None = Field(default=None, ge=0)
    owner_max_usd_per_day: float | None = Field(default=None, ge=0)
    # API limits and capacity (service/): see docs/service.md, "Capacity and limits"
    api_db_threads: int = Field(default=16, ge=1, le=256)
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=8 * 2**20, ge=1024)
    max_infer_samples: int = Field(default=10_000, ge=1)
    max_image_width: int = Field(default=16_384, ge=1)
    storage_quota_bytes: int = Field(default=2**30, ge=0)
    sse_poll_s: float = Field(default=5.0, gt=0)
    sse_max_s: float = Field(default=3600.0, gt=0)
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    checkpoint_keep: int = Field(default=3, ge=1)
    progress_event_retention_s: float = Field(default=7 * 86400.0, ge=0)

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.environment != "development" and self.secret_key.get_secret_value() == DEFAULT_SECRET:
            raise ValueError(
                f"SQSNN_SECRET_KEY must be set when SQSNN_ENVIRONMENT={self.environment}; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return self

    @property
    def embedded(self) -> bool:
        """True when no external database or broker is configured."""
        return self.database_url is None and self.broker_url is None

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL actually used (SQLite under ``home`` when embedded)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'sqsnn.db'}"

    @property
    def celery_broker_url(self) -> str:
        """The broker URL actually used (``filesystem://`` when none is configured)."""
        return self.broker_url or "filesystem://"

    @property
    def pubsub_url(self) -> str | None:
        """Redis URL for live progress; falls back to the broker when it is Redis, else None."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def hardware_stale_s(self) -> float:
        """An open QPU submission not looked at for this long lost its poll message; the poller re-sends it."""
        return self.provider_backoff_max_s + 3 * self.hardware_poll_interval_s

    @property
    def artifacts_dir(self) -> Path:
        """Directory holding model files and checkpoints."""
        return self.home / "artifacts"

    @property
    def broker_dir(self) -> Path:
        """Directory of the embedded file-system broker."""
        return self.home / "broker"
