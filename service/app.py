"""The FastAPI application factory."""

from __future__ import annotations

from celery import Celery
from fastapi import FastAPI

from service import errors
from service.deps import Db
from service.limits import BodyLimit
from service.metrics import AppMetrics
from service.routes import jobs, models, system
from service.wakeups import Wakeups
from workers.celery_app import make_celery
from workers.settings import Settings


def create_app(settings: Settings | None = None, celery: Celery | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: from the environment)."""
    settings = settings or Settings()
    app = FastAPI(
        title="sqsnn",
        version="1",
        summary="Train and run stochastic quantum spiking neural networks on simulators and QPUs.",
    )
    app.state.settings = settings
    app.state.db = Db(settings)
    app.state.sessions = app.state.db.sessions
    app.state.celery = celery or make_celery(settings)
    app.state.metrics = AppMetrics(app.state.db.sessions)
    app.state.wakeups = Wakeups(settings.pubsub_url)
    app.state.readiness = system.Readiness()
    errors.install(app)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(system.router)
    # the last added is outermost: the metrics see every answer, including the size limit's 413s
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(app.state.metrics.middleware)
    return app
