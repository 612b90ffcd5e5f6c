"""The FastAPI application factory."""

from __future__ import annotations

from typing import Any

from celery import Celery
from fastapi import FastAPI

from service import errors
from service.deps import Db
from service.limits import BodyLimit
from service.metrics import AppMetrics
from service.routes import estimates, jobs, model_upload, models, system, ui
from service.wakeups import Wakeups
from workers.celery_app import make_celery
from workers.settings import Settings


def _without_null_parameters(app: FastAPI) -> None:
    """Optional query and header parameters are optional by being absent: their schema in the OpenAPI
    document is the value's, without pydantic's ``anyOf [..., null]`` (a query string cannot carry a null)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            for path in spec["paths"].values():
                for operation in path.values():
                    for param in operation.get("parameters", []):
                        options = param.get("schema", {}).get("anyOf", [])
                        if not param.get("required") and {"type": "null"} in options and len(options) == 2:
                            (value,) = [o for o in options if o != {"type": "null"}]
                            rest = {k: v for k, v in param["schema"].items() if k != "anyOf"}
                            param["schema"] = {**value, **rest}
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    app.include_router(model_upload.router)
    app.include_router(estimates.router)
    app.include_router(ui.router)
    # the last added is outermost: the metrics see every answer, including the size limit's 413s
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(app.state.metrics.middleware)
    _without_null_parameters(app)
    return app
