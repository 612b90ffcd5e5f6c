"""The FastAPI application factory."""

from __future__ import annotations

from celery import Celery
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from service.errors import validation_handler
from service.metrics import AppMetrics
from service.routes import jobs, models, system
from workers.celery_app import make_celery
from workers.db import make_sessionmaker
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
    app.state.sessions = make_sessionmaker(settings)
    app.state.celery = celery or make_celery(settings)
    app.state.metrics = AppMetrics(app.state.sessions)
    app.middleware("http")(app.state.metrics.middleware)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(system.router)
    return app
