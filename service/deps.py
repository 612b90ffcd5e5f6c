"""FastAPI dependencies: the database runner, the bearer key, settings and the Celery app.

Every database access of a request is one short synchronous unit of work (``Db.run``): a session is opened,
used and closed inside a single call on a worker thread, so no pooled connection is ever held across an
``await``, a second thread hop or response serialisation. Those threads are limited by a capacity limiter
of ``SQSNN_API_DB_THREADS`` tokens and the pool holds exactly that many connections plus one reserved for
probes (readiness and the scrape-time job counts, which have a one-token limiter of their own), so a thread
never waits for a connection and a queue of requests waits for a thread, in the event loop, holding nothing.

A pooled connection is checked for liveness (one round trip) only when it has been idle in the pool for more
than ``IDLE_PING_S``: under load connections are reused within milliseconds and skip that round trip, while
one left idle across a database restart is found dead and replaced before a request uses it.

Read-only units (``Db.run(..., read_only=True)``) run on an autocommit connection: each statement is its own
snapshot, as under the READ COMMITTED transactions they replace, without the BEGIN and ROLLBACK round trips.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from celery import Celery
from fastapi import Depends, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from service.auth import owner_of
from service.errors import ApiError, not_found
from workers.db import make_sessionmaker, session_scope
from workers.models import Job, Model
from workers.settings import Settings

T = TypeVar("T")
OwnedRow = TypeVar("OwnedRow", Job, Model)

IDLE_PING_S = 1.0

_bearer = HTTPBearer(auto_error=False, description="API key created with `sqsnn keys create`")


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a connection at checkout when it has been idle in the pool for more than ``idle_s`` seconds;
    a dead one raises ``DisconnectionError`` there, which makes the pool replace it and retry."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        if time.monotonic() - record.info.get("returned", time.monotonic()) <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection found dead after idling: {exc}") from exc


class Db:
    """The API's database: a session factory and the thread limiters that bound its use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: sessionmaker[Session] = make_sessionmaker(
            settings, pool_size=settings.api_db_threads + 1, pre_ping=False
        )
        engine = self.sessions.kw["bind"]
        ping_when_idle(engine, IDLE_PING_S)
        self.readers: sessionmaker[Session] = sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        self.limiter = anyio.CapacityLimiter(settings.api_db_threads)
        self.probe_limiter = anyio.CapacityLimiter(1)

    async def run(
        self,
        work: Callable[[Session], T],
        *,
        probe: bool = False,
        read_only: bool = False,
        then: Callable[[T], None] | None = None,
    ) -> T:
        """``work(session)`` on a worker thread with a session of its own, closed (rolled back unless
        ``work`` committed) before the thread returns; with ``read_only`` the session autocommits (``work``
        must not write). ``work`` must return plain data or response models, never ORM rows (they would
        lazy-load after the session closed). ``then(result)`` runs on the same thread after the session closed
        (its connection back in the pool): broker I/O after a commit without a second thread hop."""
        factory = self.readers if read_only else self.sessions

        def unit() -> T:
            with session_scope(factory) as session:
                result = work(session)
            if then is not None:
                then(result)
            return result

        return await anyio.to_thread.run_sync(unit, limiter=self.probe_limiter if probe else self.limiter)

    def dispose(self) -> None:
        """Close every pooled connection."""
        engine = self.sessions.kw["bind"]
        engine.dispose()


async def get_db(request: Request) -> Db:
    """The app's database runner."""
    db: Db = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_celery(request: Request) -> Celery:
    """The Celery app used to enqueue tasks."""
    app: Celery = request.app.state.celery
    return app


async def get_key(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    """The bearer key of the request (checked against the database in the request's unit of work);
    401 when the header is missing or not a bearer token."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            "header.Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return creds.credentials


DbDep = Annotated[Db, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
KeyDep = Annotated[str, Depends(get_key)]
JobId = Annotated[uuid.UUID, Path(description="job id (UUID)")]
ModelId = Annotated[uuid.UUID, Path(description="model id (UUID)")]


def authenticate(session: Session, settings: Settings, key: str) -> str:
    """The owner of ``key``; 401 when no active key matches."""
    owner = owner_of(session, settings, key)
    if owner is None:
        raise ApiError(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", "header.Authorization", {"WWW-Authenticate": "Bearer"}
        )
    return owner


def owned(session: Session, table: type[OwnedRow], row_id: uuid.UUID, owner: str) -> OwnedRow:
    """The ``table`` row ``row_id`` of ``owner``; 404 naming it when it does not exist or belongs to
    someone else."""
    row = session.get(table, str(row_id))
    name = table.__name__.lower()
    if row is None or row.owner != owner:
        not_found(name, f"path.{name}_id")
    return row
