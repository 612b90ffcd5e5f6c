"""API limits: indexes for the hot lookups of the API (filtered job lists and per-owner limits, SSE reads,
model listing)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 21:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_state_created", "jobs", ["owner", "state", "created_at", "id"], unique=False)
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"], unique=False)
    op.create_index("ix_models_owner_created", "models", ["owner", "created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_models_owner_created", table_name="models")
    op.drop_index("ix_job_events_job_id_id", table_name="job_events")
    op.drop_index("ix_jobs_owner_state_created", table_name="jobs")
