"""Redis restarted mid-job loses nothing: a QPU job on the loopback provider runs through a prefork worker
(2 processes, beat) whose broker and pub/sub are a Redis server of this test's own; the server is killed
while the job's first layer waits in the provider's queue and started again empty (no persistence: every
queued, scheduled and unacknowledged message is gone). The job must still finish, with the result of an
undisturbed run and exactly one provider submission per layer: the rows in PostgreSQL hold the state, the
poller re-sends the task of every submission nobody looked at, and the row locks make any message that
did survive harmless. The provider keeps its state in the shared test Redis (it is another system).

The worker runs supervised, as compose runs it (``restart: unless-stopped``): with kombu 5.7.0 a worker
that loses its Redis broker while holding unacknowledged messages exits ("Unrecoverable error:
AttributeError: 'NoneType' object has no attribute 'hostname'", raised while kombu restores those
messages on the closed connection), and its supervisor starts it again."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
from qpu_jobs import infer_spec, keys_of, store_model, submissions, submit, wait_final
from qpu_provider import accepted, store

pytestmark = [
    pytest.mark.service,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]


class RedisServer:
    """A ``redis-server`` on ``port`` without persistence (a restart starts empty)."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.folder), "--protected-mode", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (a crashed or restarted Redis)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path):
    from conftest import free_port

    server = RedisServer(free_port(), tmp_path)
    yield server
    server.kill()


def test_a_redis_restart_mid_job_loses_nothing(served, settings, own_redis, tmp_path, monkeypatch) -> None:
    from conftest import WorkerProcess

    monkeypatch.setenv("LOOPBACK_REDIS_URL", settings.pubsub_url)  # the provider's state is not sqsnn's Redis
    own = settings.model_copy(update={"broker_url": own_redis.url, "redis_url": own_redis.url})
    sessions = served.app.state.sessions
    provider = store(settings.pubsub_url)
    owner = f"restart-{uuid.uuid4().hex[:6]}"
    model_id = store_model(sessions, own, owner)
    workers = [WorkerProcess(own, tmp_path / "worker-0.log", "restart", beat=True)]

    def supervise_until_final(job_ids: list[str], timeout: float) -> dict:
        """Wait for the jobs, starting the worker again whenever it exited (its supervisor's restart)."""
        deadline = time.monotonic() + timeout
        while True:
            if workers[-1].proc.poll() is not None:
                log = tmp_path / f"worker-{len(workers)}.log"
                workers.append(WorkerProcess(own, log, "restart", beat=True))
            try:
                return wait_final(sessions, job_ids, timeout=1)
            except AssertionError:
                assert time.monotonic() < deadline, f"jobs not final after {timeout} s"

    try:
        reference = submit(sessions, own, owner, infer_spec(model_id, "loopback:q1"))
        assert supervise_until_final([reference], 90)[reference].state == "succeeded"
        job_id = submit(sessions, own, owner, infer_spec(model_id, "loopback:q6"))  # 6 polls queued per layer

        def queued() -> bool:
            rows = submissions(sessions, job_id)
            return [r.status for r in rows] == ["queued"]

        deadline = time.monotonic() + 60
        while not queued():
            assert time.monotonic() < deadline, "the first layer never queued at the provider"
            time.sleep(0.1)
        own_redis.kill()
        time.sleep(2)  # the worker and beat lose their connections
        own_redis.start()  # empty: no snapshot, no append-only file
        jobs = supervise_until_final([reference, job_id], 120)
    finally:
        for worker in workers:
            worker.stop()
    print(f"worker processes started: {len(workers)} (restarted {len(workers) - 1} times after Redis came back)")
    job = jobs[job_id]
    assert job.state == "succeeded", job.failure_reason
    assert [accepted(provider, key) for key in keys_of(job_id)] == [1, 1]  # one provider job per layer
    assert [(r.step, r.status) for r in submissions(sessions, job_id)] == [(0, "done"), (1, "done")]
    assert job.result["predictions"] == jobs[reference].result["predictions"]
    assert job.result["spikes"] == jobs[reference].result["spikes"]
    assert job.shots == 2 * 3
