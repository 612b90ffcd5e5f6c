"""Embedded mode end to end: SQLite, the file-system broker and a worker process, no PostgreSQL or Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.service


def embedded_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQSNN_")}
    env |= {"SQSNN_HOME": str(home), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    return env


def test_demo_trains_digits_through_the_rest_api(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "demo", "--epochs", "2", "--hidden", "16",
         "--limit-train", "200", "--home", str(home)],
        cwd=ROOT, env=embedded_env(tmp_path / "unused"), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"worker log: {home / 'worker.log'}" in out.stdout
    acc = float(re.search(r"final test accuracy: ([0-9.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    with sqlite3.connect(home / "sqsnn.db") as db:
        state, result = db.execute("SELECT state, result FROM jobs").fetchone()
        epochs = [r[0] for r in db.execute("SELECT epoch FROM epoch_metrics ORDER BY epoch")]
        kinds = {r[0] for r in db.execute("SELECT kind FROM job_events")}
    assert state == "succeeded" and epochs == [1, 2]
    assert round(json.loads(result)["test_accuracy"], 4) == acc
    assert {"state", "progress", "epoch"} <= kinds
    assert list((home / "artifacts" / "models").glob("*.pt"))


def test_serve_embedded_prints_a_key_and_runs_jobs(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        cwd=ROOT, env=embedded_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        key = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("sqsnn_"):
                key = line.strip()
                break
        assert key, "serve did not print the first API key"
        assert next(proc.stdout).strip() == f"worker log: {tmp_path / 'worker.log'}"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "API did not become ready"
            time.sleep(0.2)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
            body = {
                "kind": "train",
                "model": {"hidden": [8]},
                "dataset": {"name": "digits", "limit_train": 64, "limit_test": 32},
                "training": {"epochs": 1, "batch_size": 32},
            }
            job_id = c.post("/v1/jobs", json=body).json()["id"]
            deadline = time.monotonic() + 120
            while (state := c.get(f"/v1/jobs/{job_id}").json()["state"]) not in ("succeeded", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert state == "succeeded"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    log = (tmp_path / "worker.log").read_text()
    assert "ready." in log and "logs to standard error" in log  # the worker says where its log goes
    assert processes_named(f"embedded-{proc.pid}@") == [], "the worker must stop with the server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_named(fragment: str) -> list[int]:
    """Pids whose command line contains ``fragment``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if fragment in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids
