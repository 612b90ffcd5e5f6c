"""Load on the job service over loopback: concurrent job submissions and status polls.

Serves the real app (``service.app:create_app``: PostgreSQL + Redis broker and pub/sub by default) and a
bare FastAPI endpoint (``GET /ping`` returning a constant) with the same uvicorn settings, each in its own
process, and drives both from this process with ``--concurrency`` concurrent httpx clients. Every scenario
is bounded by ``--requests`` and ``--seconds``. No worker runs: submitted jobs stay queued; the scratch
database and the bench's Redis database are dropped/flushed at the end.

Prints, per scenario: requests, requests/s, p50 and p99 latency in ms, and the ratio of requests/s to the
bare endpoint measured in the same run.
Usage: ``python bench/service_load.py [--requests 400] [--concurrency 16] [--seconds 20]``
(``--sqlite`` for the embedded SQLite + file-broker configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import redis
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/12"

bare = FastAPI()


@bare.get("/ping")
def ping() -> dict[str, str]:
    """The reference: a sync endpoint returning a constant (same threadpool path as the service's)."""
    return {"status": "ok"}


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(target: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start uvicorn on a free port with ``target`` (app spec and flags); wait until it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", *target, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/healthz" if "--factory" in target else f"{url}/ping", timeout=1)
            return proc, url
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"uvicorn {target} did not start") from None
            time.sleep(0.1)


async def drive(
    url: str, make: Any, n: int, concurrency: int, seconds: float, headers: dict[str, str]
) -> dict[str, Any]:
    """Send up to ``n`` requests built by ``make(i) -> (method, path, json)`` with ``concurrency`` workers."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:

        async def one_worker() -> None:
            nonlocal errors
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                method, path, body = make(i)
                t0 = time.perf_counter()
                r = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code >= 400:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
    }


def job_body(i: int) -> dict[str, Any]:
    """A small training job (never run: no worker)."""
    return {
        "kind": "train",
        "model": {"hidden": [16]},
        "dataset": {"name": "digits", "limit_train": 100},
        "training": {"epochs": 1},
        "seed": i,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario (upper bound)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="time limit per scenario")
    parser.add_argument("--sqlite", action="store_true", help="embedded SQLite + file broker instead of PG/Redis")
    args = parser.parse_args()

    from service.auth import create_key
    from service.embedded import migrate, settings_env
    from workers.db import make_sessionmaker
    from workers.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="sqsnn-bench-"))
    db_name = f"sqsnn_bench_{uuid.uuid4().hex[:8]}"
    common = {"environment": "test", "secret_key": "bench-secret", "home": home, "max_active_jobs": 10**9}
    if args.sqlite:
        settings = Settings(**common)
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db_name}"
        settings = Settings(**common, database_url=url, broker_url=REDIS_URL)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        migrate(settings)
        with make_sessionmaker(settings)() as s:
            key = create_key(s, settings, "bench")
        env = {**settings_env(settings), "OMP_NUM_THREADS": "1"}
        app_proc, app_url = serve(["--factory", "service.app:create_app"], env)
        bare_proc, bare_url = serve(["bench.service_load:bare"], env)
        procs += [app_proc, bare_proc]
        auth = {"Authorization": f"Bearer {key}"}
        seed_ids = [httpx.post(f"{app_url}/v1/jobs", json=job_body(i), headers=auth).json()["id"] for i in range(20)]

        def run(url: str, make: Any) -> dict[str, Any]:
            return asyncio.run(drive(url, make, args.requests, args.concurrency, args.seconds, auth))

        rows = [
            ("bare FastAPI GET /ping", run(bare_url, lambda i: ("GET", "/ping", None))),
            ("POST /v1/jobs (submit)", run(app_url, lambda i: ("POST", "/v1/jobs", job_body(1000 + i)))),
            ("GET /v1/jobs/{id} (poll)", run(app_url, lambda i: ("GET", f"/v1/jobs/{seed_ids[i % 20]}", None))),
            (
                "mixed 1 submit : 4 polls",
                run(
                    app_url,
                    lambda i: (
                        ("POST", "/v1/jobs", job_body(10**6 + i))
                        if i % 5 == 0
                        else ("GET", f"/v1/jobs/{seed_ids[i % 20]}", None)
                    ),
                ),
            ),
        ]
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if not args.sqlite:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            redis.Redis.from_url(REDIS_URL).flushdb()
    backend = "SQLite + file broker" if args.sqlite else "PostgreSQL + Redis"
    print(f"service load on loopback ({backend}; concurrency {args.concurrency}; uvicorn, 1 process each)")
    print(
        f"{'scenario':28s} {'requests':>8s} {'errors':>6s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs bare':>8s}"
    )
    ref = rows[0][1]["rps"]
    for name, r in rows:
        print(
            f"{name:28s} {r['requests']:8d} {r['errors']:6d} {r['rps']:8.1f} {r['p50']:8.2f} {r['p99']:8.2f} "
            f"{r['rps'] / ref:8.3f}"
        )


if __name__ == "__main__":
    main()
