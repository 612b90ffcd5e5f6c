"""Pytest fixtures of the Amazon Braket twin (:mod:`tests.twins.braket`).

* ``braket_s3`` (session scope): a moto server (``ThreadedMotoServer``) on 127.0.0.1 serving S3 and STS,
  with the bucket :data:`BUCKET`; its URL.
* ``braket_twin`` (function scope, so faults are per test): a started :class:`BraketTwin` and this process's
  environment pointed at it (``BraketTwin.env()``: endpoint URLs, the twin's credentials, region, retries);
  stopped at teardown. Worker subprocesses get the same environment from ``braket_twin.env()``.
* ``braket_twin_module`` (module scope): the same for a whole module; ``reset()`` it between tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from tests.twins.braket import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, BraketTwin

BUCKET = "sqsnn-twin-results"


@pytest.fixture(scope="session")
def braket_s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    s3.create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _point_at(twin: BraketTwin, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in twin.env().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "BRAKET_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def braket_twin(braket_s3: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[BraketTwin]:
    twin = BraketTwin(braket_s3).start()
    _point_at(twin, monkeypatch)
    yield twin
    twin.stop()


@pytest.fixture(scope="module")
def braket_twin_module(braket_s3: str) -> Iterator[BraketTwin]:
    """One twin for a module (e.g. for worker processes started once with ``env()``); call ``reset()``
    between tests to drop the previous test's faults and plans."""
    twin = BraketTwin(braket_s3).start()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _point_at(twin, monkeypatch)
        yield twin
    twin.stop()
