"""Database engine and sessions (SQLAlchemy 2). PostgreSQL in deployment, SQLite when embedded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from workers.settings import Settings


class Base(DeclarativeBase):
    """Declarative base of every table."""


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, pool_timeout_s: float = 30.0, pre_ping: bool = True
) -> Engine:
    """An engine for ``url``: at most ``pool_size + max_overflow`` pooled connections, waiting at most
    ``pool_timeout_s`` seconds for one. SQLite gets WAL, a busy timeout and enforced foreign keys;
    PostgreSQL a 5 s connect timeout (a stopped database fails fast instead of hanging a thread) and, with
    ``pre_ping``, a liveness round trip at every checkout."""
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout_s}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=pre_ping, connect_args={"connect_timeout": 5}, **pool)


def make_sessionmaker(
    settings: Settings, *, pool_size: int | None = None, pre_ping: bool = True
) -> sessionmaker[Session]:
    """A session factory bound to the configured database (directories created when embedded).

    With ``pool_size`` (the API: one connection per database thread, see ``service.deps``) the pool never
    grows beyond it and a wait longer than ``settings.db_pool_timeout_s`` raises; without it, the workers'
    default pool (10 + 20 overflow). ``pre_ping=False`` leaves liveness checks to the caller."""
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    if pool_size is None:
        engine = make_engine(settings.sqlalchemy_url)
    else:
        engine = make_engine(
            settings.sqlalchemy_url,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout_s=settings.db_pool_timeout_s,
            pre_ping=pre_ping,
        )
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that rolls back on error and always closes."""
    session = factory()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
