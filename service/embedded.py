"""Embedded mode: API, one worker (with the periodic poller and reaper) and the database on one machine.

With no ``SQSNN_DATABASE_URL`` / ``SQSNN_BROKER_URL`` this is SQLite and Celery's file-system broker under
``SQSNN_HOME``; with them set it serves the configured deployment instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import uvicorn
from alembic import command
from alembic.config import Config
from sqlalchemy import select

from service.app import create_app
from service.auth import create_key
from workers.celery_app import HW_QUEUE, PERIODIC_QUEUE, SIM_QUEUE
from workers.db import make_sessionmaker
from workers.models import ApiKey
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def alembic_ini() -> Path:
    """The repository's ``alembic.ini``: next to the sources (editable install) or in the working directory."""
    for folder in (ROOT, Path.cwd()):
        if (folder / "alembic.ini").is_file() and (folder / "migrations").is_dir():
            return folder / "alembic.ini"
    raise FileNotFoundError("alembic.ini and migrations/ not found; run from the repository root (or /app)")


def migrate(settings: Settings) -> None:
    """``alembic upgrade head`` on the configured database."""
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    ini = alembic_ini()
    cfg = Config(str(ini))
    cfg.set_main_option("script_location", str(ini.parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.sqlalchemy_url)
    command.upgrade(cfg, "head")


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings`` written as ``SQSNN_*`` variables (for child processes);
    ``SQSNN_*`` variables that are not settings (e.g. ``SQSNN_IBM_API_URL``, read by backends) pass through."""
    fields = {f"SQSNN_{name.upper()}" for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in fields}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"SQSNN_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def worker_log(settings: Settings) -> Path:
    """Where ``sqsnn serve`` and :class:`EmbeddedService` write their worker's log: ``$SQSNN_HOME/worker.log``."""
    return settings.home / "worker.log"


def start_worker(settings: Settings, log: Path | None = None, *, beat: bool = True) -> subprocess.Popen[bytes]:
    """A ``celery worker`` child process (solo pool, every queue, optional embedded beat)."""
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "-P", "solo",
        "-Q", f"{SIM_QUEUE},{HW_QUEUE},{PERIODIC_QUEUE}", "-n", f"embedded-{os.getpid()}@%h", "--loglevel=INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if beat:
        settings.home.mkdir(parents=True, exist_ok=True)
        cmd += ["-B", "-s", str(settings.home / "celerybeat-schedule")]
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        cmd, cwd=ROOT, env=settings_env(settings), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """Stop a child process group: SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def ensure_key(settings: Settings, owner: str) -> str | None:
    """Create a key for ``owner`` when the database holds none at all; returns it (else None)."""
    with make_sessionmaker(settings)() as s:
        if s.scalar(select(ApiKey.id).limit(1)) is not None:
            return None
        return create_key(s, settings, owner)


class EmbeddedService:
    """Context manager running migrations, a worker process and the API (uvicorn in a thread)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log = worker_log(settings)
        self.url = ""

    def __enter__(self) -> EmbeddedService:
        migrate(self.settings)
        self.worker = start_worker(self.settings, self.worker_log)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        sock = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def key(self, owner: str) -> str:
        """A new API key for ``owner``."""
        with self.app.state.sessions() as s:
            return create_key(s, self.settings, owner)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        if self.worker is not None:
            stop_process(self.worker)
