"""Fixtures of the service tests: a fresh PostgreSQL database, a Redis database, real Celery worker
processes and the API served by uvicorn on a loopback port. Nothing is mocked."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
import uvicorn
from alembic import command
from alembic.config import Config

from service.app import create_app
from service.auth import create_key
from service.embedded import settings_env
from workers.celery_app import HW_QUEUE, PERIODIC_QUEUE, SIM_QUEUE
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("SQSNN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SQSNN_TEST_REDIS", "redis://127.0.0.1:6379/13")
# ibm-local runs through the QPU state machine too, and the loopback provider (tests/service/qpu_provider.py)
# is a remote-like provider keeping its jobs in Redis, so every worker process sees them
QPU_BACKENDS = "ibm-local,loopback=tests.service.qpu_provider:LoopbackProvider"


@functools.cache
def _unreachable(service: str) -> str | None:
    """Why the service tests cannot reach ``service`` ("postgresql" or "redis"), in one line with the fix;
    None when it answers. Asked once per session."""
    try:
        if service == "postgresql":
            with psycopg.connect(PG_ADMIN, connect_timeout=5):
                return None
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5).ping()
        return None
    except (psycopg.Error, redis.RedisError) as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if service == "postgresql":
        return (
            f"PostgreSQL does not answer at SQSNN_TEST_PG={PG_ADMIN} ({cause}). The service tests need a server "
            "where that role connects over TCP without a password and may create databases: start one "
            "(`make services` on Debian) or point SQSNN_TEST_PG at one; `pytest -m 'not service'` skips them."
        )
    return (
        f"Redis does not answer at SQSNN_TEST_REDIS={REDIS_URL} ({cause}). The service tests flush and use that "
        "database: start Redis (`make services` on Debian) or point SQSNN_TEST_REDIS at a database of your own; "
        "`pytest -m 'not service'` skips them."
    )


def require(service: str) -> None:
    """Fail the calling test with :func:`_unreachable`'s message (no driver traceback) when ``service`` is down."""
    if (problem := _unreachable(service)) is not None:
        pytest.fail(problem, pytrace=False)


def alembic_config(url: str) -> Config:
    """Alembic config of this repository pointing at ``url``."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def _new_database() -> Iterator[str]:
    require("postgresql")
    name = f"sqsnn_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for the session (dropped afterwards); yields its SQLAlchemy URL."""
    yield from _new_database()


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    yield from _new_database()


@pytest.fixture
def alembic_cfg() -> Callable[[str], Config]:
    """Builder of this repository's Alembic config for a database URL."""
    return alembic_config


@pytest.fixture(scope="session")
def migrated_db(pg_database: str) -> str:
    """The database at the newest migration."""
    command.upgrade(alembic_config(pg_database), "head")
    return pg_database


@pytest.fixture(scope="session")
def settings(migrated_db: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Deployment-like settings: PostgreSQL, Redis broker and pub/sub, short leases for fast recovery."""
    require("redis")
    redis.Redis.from_url(REDIS_URL).flushdb()
    return Settings(
        environment="test",
        secret_key="test-secret-not-for-production",  # type: ignore[arg-type]
        home=tmp_path_factory.mktemp("sqsnn-home"),
        database_url=migrated_db,
        broker_url=REDIS_URL,
        max_active_jobs=3,
        visibility_timeout_s=6,
        lease_s=3.0,
        reaper_interval_s=1.0,
        hardware_poll_interval_s=1.0,
        provider_backoff_max_s=2.0,
        qpu_backends=QPU_BACKENDS,
        cancel_poll_s=0.1,
        progress_interval_s=0.0,
    )


class WorkerProcess:
    """A real ``celery worker`` process in its own process group, shaped as deployed: a prefork pool of
    ``concurrency`` processes on the simulator and hardware queues; with ``beat`` it also runs the beat
    scheduler and consumes the periodic queue (as compose's scheduler does)."""

    def __init__(
        self, settings: Settings, log: Path, name: str, beat: bool, queues: tuple[str, ...] = (SIM_QUEUE, HW_QUEUE),
        concurrency: int = 2,
    ) -> None:  # fmt: skip
        queues = (*queues, PERIODIC_QUEUE) if beat else queues
        cmd = [
            sys.executable, "-m", "celery", "-A", "workers.worker", "worker",
            "-Q", ",".join(queues), "-P", "prefork", "--concurrency", str(concurrency), "-n", f"{name}@%h",
            "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if beat:
            cmd += ["-B", "-s", str(log.with_suffix(".beat"))]
        self.log = log
        self._fh = log.open("wb")
        env = {**settings_env(settings), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crashed machine, as far as the job can tell)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._fh.close()

    def stop(self) -> None:
        """Cold shutdown (the worker is idle by then), escalating to SIGKILL."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker process shared by a test module."""
    w = WorkerProcess(settings, tmp_path_factory.mktemp("worker") / "shared.log", "shared", beat=False)
    yield w
    w.stop()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory of worker processes; every one is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(name: str = "w", beat: bool = False, **kwargs: Any) -> WorkerProcess:
        w = WorkerProcess(settings, tmp_path / f"{name}-{len(started)}.log", name, beat, **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServedApp:
    """The API served by uvicorn in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def key(self, owner: str) -> str:
        """A new API key of ``owner``."""
        with self.app.state.sessions() as s:
            return create_key(s, self.app.state.settings, owner)

    def stop(self) -> None:
        """Stop serving."""
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def served(settings: Settings) -> Iterator[ServedApp]:
    """The API on a loopback port for the whole session."""
    app = ServedApp(settings)
    yield app
    app.stop()


@pytest.fixture
def client(served: ServedApp) -> Iterator[httpx.Client]:
    """An HTTP client authenticated as a fresh owner (so active-job limits never leak between tests)."""
    key = served.key(f"owner-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c
        for state in ("queued", "running"):  # leave nothing behind for the next test's worker
            for job in c.get("/v1/jobs", params={"state": state, "limit": 100}).json()["items"]:
                c.post(f"/v1/jobs/{job['id']}/cancel")


def make_train_body(**overrides: Any) -> dict[str, Any]:
    """A tiny digits training job (hidden 16, 200 training images)."""
    body: dict[str, Any] = {
        "kind": "train",
        "name": "tiny",
        "model": {"hidden": [16]},
        "dataset": {"name": "digits", "limit_train": 200, "limit_test": 100},
        "encoder": {"T": 4, "p_max": 0.5},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01},
        "seed": 1,
    }
    body.update(overrides)
    return body


def wait_for_state(client: httpx.Client, job_id: str, states: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    """Poll the job until its state is one of ``states``; returns the job."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s: {job}")
        time.sleep(0.1)


@pytest.fixture
def train_body() -> Callable[..., dict[str, Any]]:
    """Builder of tiny training job bodies."""
    return make_train_body


@pytest.fixture
def wait_for() -> Callable[..., dict[str, Any]]:
    """Poll a job until it reaches one of the given states."""
    return wait_for_state
