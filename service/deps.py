"""FastAPI dependencies: settings, database session, the Celery app and the authenticated owner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, TypeVar

from celery import Celery
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.auth import owner_of
from service.errors import not_found
from workers.models import Job, Model
from workers.settings import Settings

OwnedRow = TypeVar("OwnedRow", Job, Model)

_bearer = HTTPBearer(auto_error=False, description="API key created with `sqsnn keys create`")


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A database session closed after the request."""
    session: Session = request.app.state.sessions()
    try:
        yield session
    finally:
        session.close()


def get_celery(request: Request) -> Celery:
    """The Celery app used to enqueue tasks."""
    app: Celery = request.app.state.celery
    return app


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
CeleryDep = Annotated[Celery, Depends(get_celery)]


def get_owner(
    session: SessionDep,
    settings: SettingsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner of the bearer key; 401 when it is missing or wrong."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    owner = owner_of(session, settings, creds.credentials)
    if owner is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return owner


OwnerDep = Annotated[str, Depends(get_owner)]


def owned(session: Session, table: type[OwnedRow], row_id: str, owner: str) -> OwnedRow:
    """The ``table`` row ``row_id`` of ``owner``; 404 naming the table (job, model) when it does not exist
    or belongs to someone else."""
    row = session.get(table, row_id)
    if row is None or row.owner != owner:
        not_found(table.__name__.lower())
    return row
