"""Backends, health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

import anyio
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.deps import Db, DbDep, KeyDep, SettingsDep, authenticate
from service.errors import error_responses
from workers.routing import catalog
from workers.schemas.responses import BackendOut, Health
from workers.settings import Settings

router = APIRouter()
READY_CACHE_S = 1.0


@router.get("/v1/backends", tags=["backends"], responses=error_responses(401, 503))
async def list_backends(db: DbDep, settings: SettingsDep, key: KeyDep) -> list[BackendOut]:
    """Backends: capabilities, availability and whether credentials are configured (never the secrets)."""

    def work(s: Session) -> None:
        authenticate(s, settings, key)

    await db.run(work, read_only=True)
    entries = await run_in_threadpool(catalog)  # probes the local simulators once per process
    return [BackendOut.model_validate(b) for b in entries]


@router.get("/healthz", tags=["health"])
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


def _broker_check(settings: Settings) -> str:
    url = settings.celery_broker_url
    if url.startswith(("redis://", "rediss://")):
        import redis

        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
        return "ok"
    if url.startswith("filesystem://"):
        return "ok" if settings.broker_dir.is_dir() else "missing broker folder"
    return "not checked"


class Readiness:
    """The readiness answer, computed at most once per ``READY_CACHE_S`` per process; concurrent callers
    share one check, which runs on the reserved probe thread and connection (never queued behind requests)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.checked_at = -float("inf")
        self.answer: Health | None = None

    @staticmethod
    def _check(db: Db) -> Health:
        checks: dict[str, str] = {}
        try:
            with db.sessions() as s:
                s.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            checks["broker"] = _broker_check(db.settings)
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
        ok = all(v in ("ok", "not checked") for v in checks.values())
        return Health(status="ok" if ok else "unavailable", checks=checks)

    async def get(self, db: Db) -> Health:
        """The cached answer, refreshed when older than ``READY_CACHE_S``."""
        async with self.lock:
            if self.answer is None or time.monotonic() - self.checked_at > READY_CACHE_S:
                self.answer = await anyio.to_thread.run_sync(self._check, db, limiter=db.probe_limiter)
                self.checked_at = time.monotonic()
            return self.answer


@router.get(
    "/readyz",
    tags=["health"],
    response_model=Health,
    responses={503: {"model": Health, "description": "the database or the broker does not answer"}},
)
async def readyz(request: Request, db: DbDep) -> JSONResponse:
    """Readiness: the database and the broker answer (checked at most once a second per process)."""
    health: Health = await request.app.state.readiness.get(db)
    code = status.HTTP_200_OK if health.status == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(health.model_dump(), code)


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request, db: DbDep) -> Response:
    """Prometheus metrics: request counts and latencies, jobs submitted, jobs per state (summed over every
    API process when PROMETHEUS_MULTIPROC_DIR is set)."""
    body = await anyio.to_thread.run_sync(request.app.state.metrics.scrape, limiter=db.probe_limiter)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
