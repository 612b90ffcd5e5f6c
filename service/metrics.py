"""Prometheus metrics: request counts and latencies, job submissions, jobs per state.

With several API processes (``uvicorn --workers N``) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
created fresh for each start (before the processes start) and shared by them: prometheus-client then keeps the
counters and histograms in files there and every process's ``/metrics`` answers the sum over all of them.
Without it, each app keeps its own registry (several apps can live in one process). ``sqsnn_jobs`` is read
from the database at scrape time, so it is the same whichever process answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.models import JOB_STATES, Job

log = logging.getLogger(__name__)


def multiprocess_dir() -> str | None:
    """The shared metrics directory when multiprocess mode is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class JobsByState(Collector):
    """``sqsnn_jobs{state=...}``: number of jobs per state, read from the database at scrape time
    (left out of a scrape when the database does not answer)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield one gauge family."""
        try:
            with self.sessions() as s:
                counts: dict[str, int] = {
                    state: n for state, n in s.execute(select(Job.state, func.count()).group_by(Job.state))
                }
        except SQLAlchemyError as exc:
            log.warning("sqsnn_jobs left out of this scrape: %s", type(exc).__name__)
            return
        family = GaugeMetricFamily("sqsnn_jobs", "Jobs per state", labels=["state"])
        for state in JOB_STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family


class AppMetrics:
    """Request counters and latency histograms, job submissions, and the scrape."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        # in multiprocess mode the values live in the shared files whatever registry the metrics join
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sqsnn_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sqsnn_http_request_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        self.jobs_submitted = Counter("sqsnn_jobs_submitted", "Jobs submitted", ["kind"], registry=self.registry)
        self.jobs = JobsByState(sessions)

    def scrape(self) -> bytes:
        """The exposition text: this process's registry, or every process's files in multiprocess mode."""
        folder = multiprocess_dir()
        if folder is None:
            registry = self.registry
        else:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=folder)
        body = generate_latest(registry)
        jobs = CollectorRegistry()
        jobs.register(self.jobs)
        return body + generate_latest(jobs)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Pure ASGI middleware counting and timing every request by its route template (not the raw path)."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)
                self.requests.labels(scope["method"], route, str(status)).inc()

        return measured
