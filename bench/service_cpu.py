"""CPU cost per request of the job service's endpoints, in one process: what bounds their throughput when the
API shares a few cores with its clients, PostgreSQL and the workers (``bench/service_load.py`` measures the
throughput itself, and needs an idle machine; this measure does not).

The app (``service.app:create_app`` on a scratch PostgreSQL database and the bench's Redis database) is called
through ``httpx.ASGITransport`` without a network or a server, one request at a time, and the process's CPU time
(every thread: the event loop and the database threads) is divided by the number of requests. Rows:

- ``null``: a raw ASGI callable that answers 200 with no body (the client and transport alone);
- ``bare``: ``GET /ping`` of the bare FastAPI app of ``bench/service_load.py``;
- ``poll``, ``list``, ``submit``: as in ``bench/service_load.py`` (the submitted jobs are scheduled an hour
  ahead; no worker runs, so they stay queued in the bench's Redis database, which is flushed at the end).

Prints CPU and wall ms per request, the app's share (CPU minus ``null``) and the CPU each request costs beyond
``bare``'s: under a real server every request also pays the server's HTTP parsing and the kernel's sockets
(the same for every endpoint), so a throughput ratio to the bare endpoint of ``r`` on saturated cores needs
that extra to stay under ``(1 / r - 1)`` times the bare request's whole cost. PostgreSQL's own CPU per query is
not in these figures (another process).
Usage: ``python bench/service_cpu.py [--requests 2000]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from starlette.types import Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_load import bare, job_body, scratch_settings


async def null_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app that answers every request 200 with an empty body."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def measure(call: Callable[[int], Awaitable[httpx.Response]], n: int) -> tuple[float, float]:
    """CPU and wall milliseconds per request of ``n`` calls, after 50 warm-up calls; every answer must be 2xx."""
    for i in range(50):
        (await call(-1 - i)).raise_for_status()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        (await call(i)).raise_for_status()
    return 1e3 * (time.process_time() - cpu) / n, 1e3 * (time.perf_counter() - wall) / n


async def run(app: object, auth: dict[str, str], n: int) -> list[tuple[str, float, float]]:
    """The rows ``(name, cpu ms, wall ms)`` for every scenario."""

    def client(target: object) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://bench")  # type: ignore[arg-type]

    async with client(app) as api, client(bare) as ref, client(null_app) as null:
        ids = [(await api.post("/v1/jobs", json=job_body(i), headers=auth)).json()["id"] for i in range(20)]
        scenarios: dict[str, Callable[[int], Awaitable[httpx.Response]]] = {
            "null": lambda i: null.get("/"),
            "bare": lambda i: ref.get("/ping"),
            "poll": lambda i: api.get(f"/v1/jobs/{ids[i % len(ids)]}", headers=auth),
            "list": lambda i: api.get("/v1/jobs?limit=20", headers=auth),
            "submit": lambda i: api.post("/v1/jobs", json=job_body(10_000 + i), headers=auth),
        }
        return [(name, *await measure(call, n)) for name, call in scenarios.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per scenario")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="sqsnn-bench-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(home)

    from service.app import create_app
    from service.auth import create_key
    from workers.db import make_sessionmaker

    with scratch_settings(home) as settings:
        with make_sessionmaker(settings)() as s:
            auth = {"Authorization": f"Bearer {create_key(s, settings, 'bench')}"}
        app = create_app(settings)
        rows = asyncio.run(run(app, auth, args.requests))
        app.state.db.dispose()
    null_cpu = rows[0][1]
    bare_cpu = rows[1][1]
    print(f"load average: {os.getloadavg()[0]:.2f}; {args.requests} requests per scenario, one at a time")
    print(f"{'scenario':8s} {'cpu ms':>8s} {'wall ms':>8s} {'app cpu ms':>11s} {'beyond bare ms':>15s}")
    for name, cpu, wall in rows:
        print(f"{name:8s} {cpu:8.3f} {wall:8.3f} {cpu - null_cpu:11.3f} {cpu - bare_cpu:15.3f}")


if __name__ == "__main__":
    main()
