"""Load on the job service in the deployed shape: ``uvicorn --workers 2`` in front of PostgreSQL and a Redis
broker and pub/sub, and a Celery worker (prefork, concurrency 2, beat), against a bare FastAPI endpoint
served the same way, at several concurrencies.

Scenarios, each at every ``--concurrency`` level (default 16, 64, 200: concurrent clients, spread over
load-generating processes of at most 16 connections each) and bounded by ``--requests`` and ``--seconds``:

- ``bare``: ``GET /ping`` of a FastAPI app returning a constant (the reference, same uvicorn settings);
- ``submit``: ``POST /v1/jobs`` (distinct bodies, 16 owners in turn: submissions of one owner are serialised);
- ``poll``: ``GET /v1/jobs/{id}`` of 20 stored jobs;
- ``list``: ``GET /v1/jobs?limit=20`` (summaries of the owner's newest jobs);
- ``sse``: as many open SSE streams as the concurrency on one job; this process then stores and announces
  20 events one after another (``workers.events``, as a worker does) and every stream's delivery latency
  (announce → frame received) is measured.

Submitted jobs are scheduled an hour ahead (``not_before``): the worker takes each one off the queue and hands
it back as ``scheduled`` (``--no-worker``: nothing consumes the queue); the next scenario starts once every job is
``scheduled``, so that the worker's backlog does not load the next measurement. The scratch database and the bench's
Redis database (``SQSNN_BENCH_REDIS``, default db 12) are dropped / flushed at the end. Prints the load
average, then requests, errors, requests/s, p50 and p99 latency in ms and requests/s relative to ``bare`` at
the same concurrency (for ``sse``: events delivered, p50/p99 delivery latency).
Usage: ``python bench/service_load.py [--concurrency 16 64 200] [--requests 3000] [--seconds 10] [--no-worker]
[--scenarios submit,poll,list,sse] [--hold SECONDS]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import psycopg
import redis
from fastapi import FastAPI
from sqlalchemy import func, select

if TYPE_CHECKING:
    from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("SQSNN_BENCH_REDIS", "redis://127.0.0.1:6379/12")
OWNERS = 16
SSE_EVENTS = 20

bare = FastAPI()


@bare.get("/ping")
async def ping() -> dict[str, str]:
    """The reference: a constant, on the event loop like the service's endpoints."""
    return {"status": "ok"}


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(target: list[str], env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``uvicorn --workers`` on a free port with ``target``; wait until it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", *target, "--workers", str(workers), "--port", str(port)]
    cmd += ["--timeout-keep-alive", "75"]  # as deployed (Dockerfile, docker-compose.yml)
    proc = subprocess.Popen([*cmd, "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            httpx.get(f"{url}/healthz" if "--factory" in target else f"{url}/ping", timeout=1)
            return proc, url
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"uvicorn {target} did not start") from None
            time.sleep(0.2)


CLIENT_CONNECTIONS = 16
"""Connections per load-generating process: one httpx client slows down past a few dozen connections (a bare
endpoint measured here: 965 requests/s at 16 connections from one process, 332 at 64 from one process, 1,306 at
64 from four), so a level's clients are spread over ``ceil(concurrency / 16)`` processes."""


@dataclass(frozen=True)
class Load:
    """One scenario's requests: ``kind`` is ``bare``, ``submit``, ``poll`` or ``list``."""

    kind: str
    url: str
    auths: list[dict[str, str]]
    job_ids: list[str]

    def request(self, i: int) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
        """Request number ``i``: (method, path, JSON body, headers)."""
        if self.kind == "bare":
            return "GET", "/ping", None, {}
        if self.kind == "submit":  # distinct bodies, the owners in turn
            return "POST", "/v1/jobs", job_body(i), self.auths[i % OWNERS]
        if self.kind == "poll":
            return "GET", f"/v1/jobs/{self.job_ids[i % len(self.job_ids)]}", None, self.auths[0]
        return "GET", "/v1/jobs?limit=20", None, self.auths[0]


async def _client_share(load: Load, indices: range, connections: int, seconds: float) -> dict[str, Any]:
    """Send the requests ``indices`` of ``load`` over ``connections`` concurrent clients of one httpx client,
    for at most ``seconds``."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    counter = iter(indices)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=load.url, limits=limits, timeout=120) as client:

        async def one_client() -> None:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                method, path, body, headers = load.request(i)
                t0 = time.perf_counter()
                try:
                    r = await client.request(method, path, json=body, headers=headers)
                    if r.status_code >= 400:
                        errors[str(r.status_code)] += 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)

        start = time.time()
        await asyncio.gather(*(one_client() for _ in range(connections)))
        end = time.time()
    return {"latencies": latencies, "errors": errors, "start": start, "end": end}


def _run_share(args: tuple[Load, range, int, float]) -> dict[str, Any]:
    return asyncio.run(_client_share(*args))


def drive(load: Load, first: int, n: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """Send up to ``n`` requests (numbers ``first`` ... ``first + n - 1``) of ``load`` from ``concurrency``
    concurrent clients spread over processes of at most :data:`CLIENT_CONNECTIONS`, for at most ``seconds``."""
    procs = -(-concurrency // CLIENT_CONNECTIONS)
    shares = [
        (load, range(first + k, first + n, procs), len(range(k, concurrency, procs)), seconds) for k in range(procs)
    ]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_run_share, shares)
    latencies = [x for part in parts for x in part["latencies"]]
    errors: Counter[str] = sum((part["errors"] for part in parts), Counter())
    wall = max(part["end"] for part in parts) - min(part["start"] for part in parts)
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "missing": 0,
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


async def fan_out(
    url: str, auth: dict[str, str], job_id: str, streams: int, announce: Any, newest: Any
) -> dict[str, Any]:
    """``streams`` open SSE streams on ``job_id``; then ``announce()`` stores and publishes one event at a time
    and returns (its id, the time just before its commit); ``newest()`` is the newest event id stored before.
    Returns the delivery latencies (commit → frame received) over every (stream, event) pair."""
    sent: dict[int, float] = {}
    arrivals: list[tuple[int, float]] = []
    errors: Counter[str] = Counter()
    before = await asyncio.to_thread(newest)
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=auth, limits=limits, timeout=120) as client:
        ready = asyncio.Semaphore(0)

        async def listen() -> None:
            got = 0
            try:
                async with client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
                    async for line in r.aiter_lines():
                        if line.startswith("retry"):
                            ready.release()
                        elif line.startswith("id: ") and int(line[4:]) > before:
                            arrivals.append((int(line[4:]), time.perf_counter()))
                            got += 1
                            if got == SSE_EVENTS:
                                return
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                ready.release()

        tasks = [asyncio.create_task(listen()) for _ in range(streams)]
        for _ in range(streams):
            await ready.acquire()
        t0 = time.perf_counter()
        for _ in range(SSE_EVENTS):
            event_id, committed = await asyncio.to_thread(announce)
            sent[event_id] = committed
            await asyncio.sleep(0.05)
        _, waiting = await asyncio.wait(tasks, timeout=60)
        for task in waiting:
            task.cancel()
        if waiting:
            errors["streams still waiting after 60 s"] += len(waiting)
        wall = time.perf_counter() - t0
    latencies = [t - sent[i] for i, t in arrivals if i in sent]
    lat = np.array(latencies or [float("nan")]) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "missing": streams * SSE_EVENTS - len(latencies),
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


LATER = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def job_body(i: int) -> dict[str, Any]:
    """A small training job scheduled an hour ahead (never trained during the bench)."""
    return {
        "kind": "train",
        "model": {"hidden": [16]},
        "dataset": {"name": "digits", "limit_train": 100},
        "seed": i,
        "not_before": LATER,
    }


def start_worker(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    """``celery worker`` as deployed (prefork, concurrency 2, every queue, beat); waits until it is ready."""
    from workers.celery_app import HW_QUEUE, PERIODIC_QUEUE, SIM_QUEUE

    log = home / "worker.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "-P", "prefork", "--concurrency", "2",
        "-Q", f"{SIM_QUEUE},{HW_QUEUE},{PERIODIC_QUEUE}", "-n", f"bench-{os.getpid()}@%h", "--loglevel=INFO",
        "-B", "-s", str(home / "celerybeat-schedule"),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"celery worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc


@contextmanager
def scratch_settings(home: Path) -> Iterator[Settings]:
    """The service's settings on a scratch PostgreSQL database (created and migrated here) and the bench's Redis
    database, with ``home`` as its home folder; on exit the database is dropped and the Redis database flushed."""
    from service.embedded import migrate
    from workers.settings import Settings

    db_name = f"sqsnn_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        settings = Settings(
            environment="test",
            secret_key="bench-secret",  # type: ignore[arg-type]
            home=home,
            max_active_jobs=10**9,
            database_url=f"postgresql+psycopg://postgres@127.0.0.1:5432/{db_name}",
            broker_url=REDIS_URL,
        )
        migrate(settings)
        yield settings
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        redis.Redis.from_url(REDIS_URL).flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64, 200])
    parser.add_argument("--requests", type=int, default=3000, help="requests per scenario and level (upper bound)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per scenario and level")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of each app")
    parser.add_argument("--no-worker", action="store_true", help="no Celery worker consumes the queue")
    parser.add_argument(
        "--scenarios", default="submit,poll,list,sse", help="comma-separated subset of submit, poll, list, sse"
    )
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to wait before the load (attach a profiler)")
    args = parser.parse_args()
    load_before = os.getloadavg()

    from service.auth import create_key
    from service.embedded import settings_env
    from workers.db import make_sessionmaker, session_scope
    from workers.events import add_event, commit_and_publish
    from workers.models import Job, JobEvent

    home = Path(tempfile.mkdtemp(prefix="sqsnn-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[tuple[int, str, dict[str, Any]]] = []
    with scratch_settings(home) as settings:
        try:
            sessions = make_sessionmaker(settings)
            with sessions() as s:
                keys = [create_key(s, settings, f"bench-{i}") for i in range(OWNERS)]
            auths = [{"Authorization": f"Bearer {k}"} for k in keys]
            env = {**settings_env(settings), "OMP_NUM_THREADS": "1", "PROMETHEUS_MULTIPROC_DIR": str(home / "prom")}
            os.makedirs(env["PROMETHEUS_MULTIPROC_DIR"])
            if not args.no_worker:
                procs.append(start_worker(env, home))
            app_proc, app_url = serve(["--factory", "service.app:create_app"], env, args.workers)
            bare_proc, bare_url = serve(["bench.service_load:bare"], env, args.workers)
            procs += [app_proc, bare_proc]
            seed_ids = [
                httpx.post(f"{app_url}/v1/jobs", json=job_body(i), headers=auths[0], timeout=60).json()["id"]
                for i in range(20)
            ]
            sse_job = seed_ids[0]

            def announce() -> tuple[int, float]:
                with session_scope(sessions) as s:
                    ev = add_event(s, sse_job, "progress", {"epoch": 1, "batch": 0, "loss": 0.0})
                    committed = time.perf_counter()
                    commit_and_publish(s, settings.pubsub_url, [ev])
                    return int(ev.id), committed

            def drain(limit: float = 300.0) -> None:
                """Wait until the worker has taken every submitted job off the queue (it hands each back as
                ``scheduled``), so that its work does not run into the next scenario's measurement."""
                if args.no_worker:
                    return
                deadline = time.monotonic() + limit
                while time.monotonic() < deadline:
                    with session_scope(sessions) as s:
                        waiting = (Job.state == "queued") & Job.substate.is_(None)
                        if not s.scalar(select(func.count()).select_from(Job).where(waiting)):
                            return
                    time.sleep(0.5)

            def newest() -> int:
                with session_scope(sessions) as s:
                    return int(s.scalar(select(func.max(JobEvent.id))) or 0)

            scenarios = [
                ("bare GET /ping", Load("bare", bare_url, auths, seed_ids)),
                ("submit POST /v1/jobs", Load("submit", app_url, auths, seed_ids)),
                ("poll GET /v1/jobs/{id}", Load("poll", app_url, auths, seed_ids)),
                ("list GET /v1/jobs", Load("list", app_url, auths, seed_ids)),
            ]
            chosen = {"bare", *args.scenarios.split(",")}
            scenarios = [(name, load) for name, load in scenarios if load.kind in chosen]
            first = 10**6  # request numbers (the submitted jobs' seeds) never repeat
            if args.hold:
                print(f"API {app_url}: uvicorn pid {app_proc.pid}; load starts in {args.hold} s", flush=True)
                time.sleep(args.hold)
            for level in args.concurrency:
                for name, load in scenarios:
                    rows.append((level, name, drive(load, first, args.requests, level, args.seconds)))
                    first += args.requests
                    if load.kind == "submit":
                        drain()
                if "sse" in chosen:
                    sse = asyncio.run(fan_out(app_url, auths[0], sse_job, level, announce, newest))
                    rows.append((level, f"sse fan-out ({SSE_EVENTS} events)", sse))
            sessions.kw["bind"].dispose()
        finally:
            for p in procs:
                p.terminate()
                p.wait(30)
    worker = "no worker" if args.no_worker else "celery worker prefork x2 + beat"
    print(
        f"service load, deployed shape (uvicorn --workers {args.workers}, PostgreSQL, Redis, {worker}; "
        f"SQSNN_API_DB_THREADS={settings.api_db_threads}; {os.cpu_count()} CPUs; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    header = ("conc", "scenario", "requests", "errors", "req/s", "p50 ms", "p99 ms", "vs bare")
    print("{:>4s} {:28s} {:>8s} {:>6s} {:>8s} {:>8s} {:>8s} {:>8s}".format(*header))
    for level, name, r in rows:
        ref = next(x for lv, n, x in rows if lv == level and n.startswith("bare"))["rps"]
        ratio = "" if name.startswith("sse") else f"{r['rps'] / ref:8.3f}"
        unit = "ev/s" if name.startswith("sse") else ""
        print(
            f"{level:4d} {name:28s} {r['requests']:8d} {sum(r['errors'].values()) + r['missing']:6d} "
            f"{r['rps']:8.1f} {r['p50']:8.2f} "
            f"{r['p99']:8.2f} {ratio:>8s} {unit}"
        )
    for level, name, r in rows:
        if r["errors"] or r["missing"]:
            missing = f", {r['missing']} events not delivered" if r["missing"] else ""
            print(f"errors at {level} {name}: {dict(r['errors'])}{missing}")


if __name__ == "__main__":
    main()
