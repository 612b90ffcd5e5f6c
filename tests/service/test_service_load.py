"""The API under load and bad input, in the deployed shape: ``uvicorn --workers 2`` processes in front of
PostgreSQL and a Redis broker and pub/sub, and a Celery worker (prefork, concurrency 2, beat) consuming the
queues. The load's jobs are scheduled an hour ahead (``not_before``): the worker takes each one off the
queue and hands it back as ``scheduled``, so the jobs stay queued (their streams open) without training.

Every test prints its raw figures (``pytest -s`` shows them) and asserts the ratios of issue 10. The
database-down test starts a throw-away PostgreSQL cluster of its own (initdb under a temporary directory,
run as the ``postgres`` user) and stops it; the shared server is never touched.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import psycopg
import pytest
import redis

from service.auth import create_key
from service.embedded import migrate, settings_env
from tests.service.conftest import WorkerProcess
from workers.db import make_sessionmaker
from workers.events import add_event, commit_and_publish
from workers.settings import Settings

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("SQSNN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SQSNN_TEST_LOAD_REDIS", "redis://127.0.0.1:6379/11")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """``uvicorn --factory service.app:create_app --workers N`` as a child process."""

    def __init__(self, settings: Settings, workers: int, metrics_dir: Path | None = None) -> None:
        self.port = free_port()
        self.metrics_dir = metrics_dir
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**settings_env(settings), "OMP_NUM_THREADS": "1"}
        if metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--workers", str(workers),
            "--port", str(self.port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
        deadline = time.monotonic() + 300  # a loaded machine takes over a minute to import the app twice
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200 and (
                    len(self.workers()) >= workers or workers == 1
                ):
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.2)

    def workers(self) -> list[psutil.Process]:
        """The worker processes (the master itself when there is only one)."""
        master = psutil.Process(self.proc.pid)
        return [c for c in master.children() if "resource_tracker" not in " ".join(c.cmdline())] or [master]

    def rss(self) -> int:
        """Resident memory of the serving processes, in bytes."""
        return sum(p.memory_info().rss for p in self.workers())

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _new_database(admin: str) -> str:
    name = f"sqsnn_load_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _key(settings: Settings, owner: str) -> str:
    """A new API key of ``owner`` in the settings' database."""
    sessions = make_sessionmaker(settings)
    with sessions() as s:
        key = create_key(s, settings, owner)
    sessions.kw["bind"].dispose()
    return key


API_APPLICATION = "sqsnn-load-api"


@pytest.fixture(scope="module")
def deployed(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str, Settings]]:
    """Two API processes and a Celery worker (prefork x2, beat) on a database and a Redis database of their
    own, multiprocess metrics on; yields (api, key, settings)."""
    name = _new_database(PG_ADMIN)
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    redis.Redis.from_url(REDIS_URL).flushdb()
    ours = settings.model_copy(
        update={"database_url": f"{base}/{name}", "broker_url": REDIS_URL, "max_active_jobs": 10**6, "sse_poll_s": 30.0}
    )
    api = worker = None
    try:
        migrate(ours)
        key = _key(ours, "load")
        worker = WorkerProcess(ours, tmp_path_factory.mktemp("worker") / "load.log", "load", beat=True)
        # the API's connections carry their own application_name: the worker shares the database
        api_settings = ours.model_copy(update={"database_url": f"{base}/{name}?application_name={API_APPLICATION}"})
        api = Api(api_settings, workers=2, metrics_dir=tmp_path_factory.mktemp("prometheus"))
        yield api, key, ours
    finally:
        if api is not None:
            api.stop()
        if worker is not None:
            worker.stop()
        _drop_database(PG_ADMIN, name)
        redis.Redis.from_url(REDIS_URL).flushdb()


def _summary(latencies: list[float]) -> dict[str, float]:
    lat = np.array(latencies) * 1000
    return {"n": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


LATER = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def train_body(seed: int, not_before: str | None = LATER) -> dict[str, Any]:
    """A small training job, by default scheduled an hour ahead (the worker hands it back: it stays queued)."""
    body = {"kind": "train", "model": {"hidden": [8]}, "dataset": {"name": "digits", "limit_train": 64}, "seed": seed}
    return body if not_before is None else {**body, "not_before": not_before}


def _db_url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.replace("postgresql+psycopg://", "postgresql://")


def test_200_concurrent_mixed_requests_no_5xx_and_each_submit_stored_once(deployed) -> None:
    api, key, settings = deployed
    auth = {"Authorization": f"Bearer {key}"}
    one = httpx.post(f"{api.url}/v1/jobs", json=train_body(0), headers=auth, timeout=60).json()["id"]
    run = uuid.uuid4().hex[:8]
    shared_key = f"shared-{run}"
    plan: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = []
    plan += [("POST", "/v1/jobs", train_body(1000 + i), {"Idempotency-Key": f"{run}-{i}"}) for i in range(60)]
    plan += [("POST", "/v1/jobs", train_body(7), {"Idempotency-Key": shared_key}) for _ in range(40)]
    plan += [("GET", "/v1/jobs?limit=50", None, {})] * 40
    plan += [("GET", f"/v1/jobs/{one}", None, {})] * 30
    plan += [("GET", "/readyz", None, {})] * 30
    assert len(plan) == 200

    async def fire() -> list[tuple[int, float, dict[str, Any]]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api.url, headers=auth, limits=limits, timeout=120) as client:

            async def one_request(method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
                t0 = time.perf_counter()
                r = await client.request(method, path, json=body, headers=headers)
                return r.status_code, time.perf_counter() - t0, r.json()

            return await asyncio.gather(*(one_request(*p) for p in plan))

    t0 = time.perf_counter()
    results = asyncio.run(fire())
    wall = time.perf_counter() - t0
    codes: dict[int, int] = {}
    for code, _, _ in results:
        codes[code] = codes.get(code, 0) + 1
    print(f"\n200 concurrent mixed requests: {wall:.2f} s wall, statuses {codes}, {_summary([r[1] for r in results])}")
    assert not [c for c in codes if c >= 500], codes
    assert all(code == 202 for code, _, _ in results[:100]), codes
    assert len({body["id"] for _, _, body in results[60:100]}) == 1  # the shared key: one job for all 40
    with psycopg.connect(_db_url(settings)) as conn:
        counts = dict(
            conn.execute(
                "SELECT idempotency_key, count(*) FROM jobs WHERE idempotency_key LIKE %s GROUP BY 1", (f"%{run}%",)
            ).fetchall()
        )
    assert counts == {**{f"{run}-{i}": 1 for i in range(60)}, shared_key: 1}


async def _latencies(url: str, auth: dict[str, str], n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=auth, limits=limits, timeout=60) as client:
        todo = iter(range(n))

        async def loop() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                r = await client.get("/v1/jobs", params={"limit": 20})
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return latencies


def test_100_open_sse_streams_hold_nothing_and_do_not_slow_listing(deployed) -> None:
    api, key, settings = deployed
    auth = {"Authorization": f"Bearer {key}"}
    jobs = [
        httpx.post(f"{api.url}/v1/jobs", json=train_body(5000 + i), headers=auth, timeout=60).json()["id"]
        for i in range(10)
    ]
    asyncio.run(_latencies(api.url, auth, 50, 4))  # warm both processes up
    without = _summary(asyncio.run(_latencies(api.url, auth, 300, 8)))

    def announce(job_id: str) -> int:
        """Store and announce one event of ``job_id`` as a worker does; returns its id."""
        sessions = make_sessionmaker(settings)
        with sessions() as s:
            ev = add_event(s, job_id, "progress", {"epoch": 1, "batch": 0, "loss": 0.0})
            commit_and_publish(s, settings.pubsub_url, [ev])
            event_id = int(ev.id)
        sessions.kw["bind"].dispose()
        return event_id

    async def until(lines: Any, event_id: int) -> None:
        async for line in lines:
            if line == f"id: {event_id}":
                return

    async def replayed(lines: Any) -> None:
        async for line in lines:
            if line.startswith("id: "):
                return

    async def with_streams() -> tuple[dict[str, float], int, int, float]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api.url, headers=auth, limits=limits, timeout=60) as sse:
            opened: list[Any] = []
            stack = []
            for i in range(100):
                cm = sse.stream("GET", f"/v1/jobs/{jobs[i % 10]}/events")
                stack.append(cm)
                opened.append(await cm.__aenter__())
            lines = [r.aiter_lines() for r in opened]
            firsts = [await it.__anext__() for it in lines]  # each has sent its retry frame
            assert all(r.status_code == 200 for r in opened) and all(f.startswith("retry") for f in firsts)
            # each stream then replays its stored events (the job's "queued" state) through one database read:
            # measure the open streams' steady state, not that opening burst of 100 reads
            await asyncio.wait_for(asyncio.gather(*(replayed(it) for it in lines)), 30)
            with psycopg.connect(_db_url(settings)) as conn:
                idle_in_tx = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction'"
                ).fetchone()[0]
                held = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = %s",
                    (API_APPLICATION,),
                ).fetchone()[0]
            summary = _summary(await _latencies(api.url, auth, 300, 8))
            # one event per job: Redis wakes every stream (the fallback re-read is 30 s away)
            t0 = time.perf_counter()
            ids = {job_id: await asyncio.to_thread(announce, job_id) for job_id in jobs}
            await asyncio.wait_for(asyncio.gather(*(until(it, ids[jobs[i % 10]]) for i, it in enumerate(lines))), 10)
            delivered_s = time.perf_counter() - t0
            for cm in stack:
                await cm.__aexit__(None, None, None)
            return summary, idle_in_tx, held, delivered_s

    streaming, idle_in_tx, held, delivered_s = asyncio.run(with_streams())
    # the machine is shared: measure without streams again afterwards, and compare with the slower of the two
    after = _summary(asyncio.run(_latencies(api.url, auth, 300, 8)))
    reference = max(without["p99_ms"], after["p99_ms"])
    print(
        f"\nGET /v1/jobs without streams {without}; with 100 open streams {streaming}; without again {after}; "
        f"p99 ratio {streaming['p99_ms'] / reference:.2f}; connections idle in transaction {idle_in_tx}, "
        f"connections of the API to its database {held}; 10 announced events reached all 100 streams "
        f"in {delivered_s:.2f} s"
    )
    assert idle_in_tx == 0
    assert held <= 2 * (settings.api_db_threads + 1)
    assert streaming["p99_ms"] <= 2 * reference


def test_50_mb_body_is_413_and_memory_returns_to_baseline(deployed) -> None:
    api, key, _ = deployed
    auth = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    for _ in range(20):  # warm-up: the baseline includes a served request's allocations
        httpx.post(f"{api.url}/v1/jobs", content=b"{}", headers=auth, timeout=60)
    baseline = api.rss()
    size = 50 * 2**20
    t0 = time.perf_counter()
    r = httpx.post(f"{api.url}/v1/jobs", content=b"x" * size, headers=auth, timeout=60)
    declared_s = time.perf_counter() - t0
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks() -> Iterator[bytes]:
        block = b"x" * 2**20
        for _ in range(50):
            yield block

    peak = baseline
    t0 = time.perf_counter()
    r = httpx.post(f"{api.url}/v1/jobs", content=chunks(), headers=auth, timeout=60)
    chunked_s = time.perf_counter() - t0
    peak = max(peak, api.rss())
    assert r.status_code == 413 and "SQSNN_MAX_BODY_BYTES" in r.json()["message"]
    time.sleep(0.5)
    after = api.rss()
    print(
        f"\n50 MB body: Content-Length -> 413 in {declared_s * 1000:.0f} ms, "
        f"chunked -> 413 in {chunked_s * 1000:.0f} ms;"
        f" API RSS baseline {baseline / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB ({after / baseline - 1:+.1%})"
    )
    assert after <= 1.10 * baseline


_SAMPLE = re.compile(r'^sqsnn_http_requests_total\{method="GET",route="/healthz",status="200"\} ([0-9.e+]+)$', re.M)


def test_metrics_are_summed_over_the_api_processes(deployed) -> None:
    api, _, _ = deployed

    def healthz_count() -> float:
        with httpx.Client() as c:  # a new connection: either process may answer
            m = _SAMPLE.search(c.get(f"{api.url}/metrics").text)
        return float(m.group(1)) if m else 0.0

    start = healthz_count()
    for _ in range(60):
        with httpx.Client() as c:
            assert c.get(f"{api.url}/healthz").status_code == 200
    scrapes = [healthz_count() - start for _ in range(6)]
    assert api.metrics_dir is not None
    writers = {f.stem.rsplit("_", 1)[1] for f in api.metrics_dir.glob("counter_*.db")}
    print(f"\n/healthz as counted by 6 scrapes after 60 requests: {scrapes}; processes writing counters: {writers}")
    assert len(writers) >= 2, writers  # both API processes served requests (uvicorn replaces one that hangs)
    assert scrapes == [60.0] * 6


def test_the_worker_consumes_the_queue(deployed) -> None:
    """The deployed shape is complete: the prefork worker takes a scheduled job off the queue (and hands it
    back as ``scheduled``) and runs a due one to ``succeeded``."""
    api, key, _ = deployed
    auth = {"Authorization": f"Bearer {key}"}
    later = httpx.post(f"{api.url}/v1/jobs", json=train_body(9001), headers=auth, timeout=60).json()["id"]
    due = httpx.post(f"{api.url}/v1/jobs", json=train_body(9002, not_before=None), headers=auth, timeout=60).json()[
        "id"
    ]
    deadline = time.monotonic() + 300  # behind the earlier tests' scheduled jobs, on a shared machine
    while True:
        jobs = {i: httpx.get(f"{api.url}/v1/jobs/{i}", headers=auth, timeout=60).json() for i in (later, due)}
        if jobs[later]["substate"] == "scheduled" and jobs[due]["state"] in ("succeeded", "failed"):
            break
        assert time.monotonic() < deadline, jobs
        time.sleep(0.5)
    assert jobs[later]["state"] == "queued"
    assert jobs[due]["state"] == "succeeded", jobs[due]["failure_reason"]


@pytest.fixture
def pg_home() -> Iterator[Path]:
    """A temporary directory the ``postgres`` user owns (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="sqsnn-pg-"))
    shutil.chown(folder, "postgres")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_database_down_is_503_with_a_message(settings: Settings, pg_home: Path) -> None:
    pg_bin = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    data = pg_home / "data"
    port = free_port()

    def as_postgres(*args: str) -> None:
        out = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr

    as_postgres(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(pg_home / "pg.log"), "-w"]
    options = f"-p {port} -k {pg_home} -c listen_addresses=127.0.0.1 -c fsync=off"
    as_postgres(*pg_ctl, "-o", options, "start")
    api = None
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE sqsnn")
        throwaway = settings.model_copy(
            update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/sqsnn", "broker_url": REDIS_URL}
        )
        migrate(throwaway)
        auth = {"Authorization": f"Bearer {_key(throwaway, 'down')}"}
        api = Api(throwaway, workers=1)
        assert httpx.get(f"{api.url}/v1/jobs", headers=auth, timeout=60).status_code == 200
        as_postgres(*pg_ctl, "-m", "immediate", "stop")
        t0 = time.perf_counter()
        answers = [
            httpx.get(f"{api.url}/v1/jobs", headers=auth, timeout=30),
            httpx.post(f"{api.url}/v1/jobs", json=train_body(1), headers=auth, timeout=30),
            httpx.get(f"{api.url}/v1/jobs/{uuid.uuid4()}", headers=auth, timeout=30),
        ]
        elapsed = time.perf_counter() - t0
        time.sleep(1.1)  # readiness is cached for a second
        ready = httpx.get(f"{api.url}/readyz", timeout=30)
        print(f"\ndatabase stopped: {[(r.status_code, r.json()['message']) for r in answers]} in {elapsed:.2f} s; "
              f"readyz {ready.status_code} {ready.json()}")  # fmt: skip
        for r in answers:
            assert r.status_code == 503 and r.headers["content-type"] == "application/json"
            assert r.json()["message"] == "the database is not answering; retry later"
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")
        as_postgres(*pg_ctl, "-o", options, "start")
        assert (
            httpx.get(f"{api.url}/v1/jobs", headers=auth, timeout=60).status_code == 200
        )  # and back without a restart
    finally:
        if api is not None:
            api.stop()
        subprocess.run(["runuser", "-u", "postgres", "--", *pg_ctl, "-m", "immediate", "stop"], capture_output=True)
