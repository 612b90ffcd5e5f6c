"""Backends, health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from service.deps import OwnerDep, SessionDep, SettingsDep
from service.schemas import BackendOut, Health
from workers.routing import catalog
from workers.settings import Settings

router = APIRouter()


@router.get("/v1/backends", tags=["backends"])
def list_backends(_owner: OwnerDep) -> list[BackendOut]:
    """Backends: capabilities, availability and whether credentials are configured (never the secrets)."""
    return [BackendOut.model_validate(b) for b in catalog()]


@router.get("/healthz", tags=["health"])
def healthz() -> Health:
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


@router.get("/readyz", tags=["health"], responses={503: {"model": Health}})
def readyz(session: SessionDep, settings: SettingsDep, response: Response) -> Health:
    """Readiness: the database and the broker answer."""
    checks: dict[str, str] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        checks["broker"] = _broker_check(settings)
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    ok = all(v in ("ok", "not checked") for v in checks.values())
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if ok else "unavailable", checks=checks)


@router.get("/metrics", tags=["health"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: request counts and latencies, jobs submitted, jobs per state."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
