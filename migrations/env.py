"""Alembic environment: migrates the database named by the settings (or ``-x url=...``)."""

from __future__ import annotations

from alembic import context

from workers import models  # noqa: F401  (registers every table on Base.metadata)
from workers.db import Base, make_engine
from workers.settings import Settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    settings = Settings()
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    return settings.sqlalchemy_url


def run_offline() -> None:
    """Emit SQL without connecting."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Connect and migrate."""
    engine = make_engine(_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
