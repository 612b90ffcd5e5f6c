"""Storage quota from an index: jobs.stored_bytes, a stored generated column (spec + result as JSON text),
and an index on (owner, stored_bytes). The quota check summed the length of every stored spec on every
submission.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STORED_BYTES_SQL = "length(CAST(spec AS TEXT)) + coalesce(length(CAST(result AS TEXT)), 0)"  # as in workers.models


def upgrade() -> None:
    # batch mode: SQLite cannot add a stored generated column in place, so the table is rebuilt there
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("stored_bytes", sa.BigInteger(), sa.Computed(STORED_BYTES_SQL, persisted=True)))
        batch.create_index("ix_jobs_owner_stored_bytes", ["owner", "stored_bytes"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner_stored_bytes")
        batch.drop_column("stored_bytes")
