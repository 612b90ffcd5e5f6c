"""Alembic: upgrade head then downgrade base on a fresh PostgreSQL database, and the models match."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from workers.db import Base

pytestmark = pytest.mark.service

TABLES = {"api_keys", "jobs", "job_events", "epoch_metrics", "checkpoints", "models", "hardware_submissions"}


def _roundtrip(url: str, cfg) -> None:
    engine = create_engine(url)
    try:
        command.upgrade(cfg, "head")
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")  # and up again: the downgrade left nothing behind
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_upgrade_head_then_downgrade_base_on_postgresql(scratch_database, alembic_cfg) -> None:
    _roundtrip(scratch_database, alembic_cfg(scratch_database))


def test_migrations_run_on_sqlite(tmp_path, alembic_cfg) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    _roundtrip(url, alembic_cfg(url))
