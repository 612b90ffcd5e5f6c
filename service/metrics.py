"""Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from workers.models import JOB_STATES, Job


class JobsByState(Collector):
    """``sqsnn_jobs{state=...}``: number of jobs per state, read from the database at scrape time."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield one gauge family."""
        family = GaugeMetricFamily("sqsnn_jobs", "Jobs per state", labels=["state"])
        with self.sessions() as s:
            counts: dict[str, int] = {
                state: n for state, n in s.execute(select(Job.state, func.count()).group_by(Job.state))
            }
        for state in JOB_STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family


class AppMetrics:
    """Request counters and latency histograms, and job submissions."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sqsnn_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sqsnn_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.jobs_submitted = Counter("sqsnn_jobs_submitted", "Jobs submitted", ["kind"], registry=self.registry)
        self.registry.register(JobsByState(sessions))

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count and time every request by its route template (not the raw path)."""
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        self.latency.labels(request.method, name).observe(time.perf_counter() - start)
        self.requests.labels(request.method, name, str(response.status_code)).inc()
        return response
