"""initial schema: api keys, jobs, events, metrics, models, checkpoints, hardware submissions

Revision ID: 0001
Revises:
Create Date: 2026-11-26 09:03:17.590614
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    op.create_index(op.f('ix_api_keys_owner'), 'api_keys', ['owner'], unique=False)
    op.create_table('models',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('test_accuracy', sa.Float(), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_models_owner'), 'models', ['owner'], unique=False)
    op.create_table('jobs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('substate', sa.String(length=32), nullable=True),
    sa.Column('provider_state', sa.String(length=64), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('backend', sa.String(length=200), nullable=False),
    sa.Column('backend_used', sa.String(length=200), nullable=True),
    sa.Column('queue', sa.String(length=32), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('progress', sa.Float(), nullable=False),
    sa.Column('input_model_id', sa.String(length=36), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('shots', sa.BigInteger(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['input_model_id'], ['models.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner', 'idempotency_key', name='uq_jobs_owner_idempotency_key')
    )
    with op.batch_alter_table('models') as batch:
        batch.create_foreign_key('fk_models_job_id_jobs', 'jobs', ['job_id'], ['id'], ondelete='SET NULL')
    op.create_index('ix_jobs_owner_created', 'jobs', ['owner', 'created_at', 'id'], unique=False)
    op.create_index('ix_jobs_state', 'jobs', ['state'], unique=False)
    op.create_table('checkpoints',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'epoch', name='uq_checkpoints_job_epoch')
    )
    op.create_index(op.f('ix_checkpoints_job_id'), 'checkpoints', ['job_id'], unique=False)
    op.create_table('epoch_metrics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('train_loss', sa.Float(), nullable=False),
    sa.Column('train_accuracy', sa.Float(), nullable=False),
    sa.Column('test_accuracy', sa.Float(), nullable=False),
    sa.Column('spike_rates', sa.JSON(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'epoch', name='uq_epoch_metrics_job_epoch')
    )
    op.create_index(op.f('ix_epoch_metrics_job_id'), 'epoch_metrics', ['job_id'], unique=False)
    op.create_table('hardware_submissions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('backend', sa.String(length=200), nullable=False),
    sa.Column('provider_job_id', sa.String(length=200), nullable=True),
    sa.Column('session_id', sa.String(length=200), nullable=True),
    sa.Column('idempotency_token', sa.String(length=64), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_state', sa.String(length=64), nullable=True),
    sa.Column('shots', sa.BigInteger(), nullable=False),
    sa.Column('usage_seconds', sa.Float(), nullable=True),
    sa.Column('cost_usd', sa.Float(), nullable=True),
    sa.Column('calibration', sa.JSON(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_token')
    )
    op.create_index(op.f('ix_hardware_submissions_job_id'), 'hardware_submissions', ['job_id'], unique=False)
    op.create_index(op.f('ix_hardware_submissions_provider_job_id'), 'hardware_submissions', ['provider_job_id'], unique=False)
    op.create_table('job_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_job_events_job_id'), 'job_events', ['job_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_job_events_job_id'), table_name='job_events')
    op.drop_table('job_events')
    op.drop_index(op.f('ix_hardware_submissions_provider_job_id'), table_name='hardware_submissions')
    op.drop_index(op.f('ix_hardware_submissions_job_id'), table_name='hardware_submissions')
    op.drop_table('hardware_submissions')
    op.drop_index(op.f('ix_epoch_metrics_job_id'), table_name='epoch_metrics')
    op.drop_table('epoch_metrics')
    op.drop_index(op.f('ix_checkpoints_job_id'), table_name='checkpoints')
    op.drop_table('checkpoints')
    with op.batch_alter_table('models') as batch:
        batch.drop_constraint('fk_models_job_id_jobs', type_='foreignkey')
    op.drop_index('ix_jobs_state', table_name='jobs')
    op.drop_index('ix_jobs_owner_created', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index(op.f('ix_models_owner'), table_name='models')
    op.drop_table('models')
    op.drop_index(op.f('ix_api_keys_owner'), table_name='api_keys')
    op.drop_table('api_keys')
