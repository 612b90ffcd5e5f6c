"""Without PostgreSQL or Redis, the service tests say which one is missing and how to fix it (no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLOSED = "127.0.0.1:1"  # nothing listens on port 1


def run_pytest(test: str, **env: str) -> str:
    """Run one service test in a child pytest with ``env`` added; returns its whole output."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-p", "no:cacheprovider", "-q"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    return out.stdout + out.stderr


@pytest.mark.parametrize(
    ("variable", "url", "test", "service"),
    [
        (
            "SQSNN_TEST_PG",
            f"postgresql://postgres@{CLOSED}/test",
            "tests/service/test_service_deploy.py::test_prestart_waits_for_the_database_then_migrates",
            "PostgreSQL",
        ),
        pytest.param(  # the Redis check comes after the session's database is created: needs PostgreSQL
            "SQSNN_TEST_REDIS",
            f"redis://{CLOSED}/0",
            "tests/service/test_service_qpu_periodic.py::"
            "test_beat_messages_go_to_the_periodic_queue_and_expire_after_one_interval",
            "Redis",
            marks=pytest.mark.service,
        ),
    ],
)
def test_a_missing_server_is_named_with_its_variable_and_the_fix(
    variable: str, url: str, test: str, service: str
) -> None:
    output = run_pytest(test, **{variable: url})
    assert f"{service} does not answer at {variable}={url}" in output
    assert "make services" in output and "-m 'not service'" in output
    assert "Traceback" not in output and "OperationalError" not in output and "ConnectionError" not in output
