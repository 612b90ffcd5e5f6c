"""QPU job state machine: submission sub-states and stored results, inference chunks, scheduling, spend limits

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("qpu_seconds", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("estimated_shots", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("estimated_cost_usd", sa.Float(), nullable=True))
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("hardware_submissions") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("polled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "job_chunks",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("stop", sa.Integer(), nullable=False),
        sa.Column("predictions", sa.JSON(), nullable=False),
        sa.Column("spikes", sa.JSON(), nullable=False),
        sa.Column("shots", sa.BigInteger(), nullable=False),
        sa.Column("backend", sa.String(length=200), nullable=False),
        sa.Column("fallback", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "index", name="uq_job_chunks_job_index"),
    )
    op.create_index(op.f("ix_job_chunks_job_id"), "job_chunks", ["job_id"], unique=False)
    op.create_table(
        "spend_limits",
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("max_shots_per_day", sa.BigInteger(), nullable=True),
        sa.Column("max_usd_per_day", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner"),
    )


def downgrade() -> None:
    op.drop_table("spend_limits")
    op.drop_index(op.f("ix_job_chunks_job_id"), table_name="job_chunks")
    op.drop_table("job_chunks")
    with op.batch_alter_table("hardware_submissions") as batch:
        batch.drop_column("polled_at")
        batch.drop_column("last_error")
        batch.drop_column("attempts")
        batch.drop_column("result")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("not_before")
        batch.drop_column("estimated_cost_usd")
        batch.drop_column("estimated_shots")
        batch.drop_column("qpu_seconds")
