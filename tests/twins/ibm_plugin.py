"""Pytest fixtures of the IBM Quantum twin (:mod:`tests.twins.ibm`).

``ibm_twin_factory(**kwargs)`` starts an :class:`~tests.twins.ibm.IBMTwin` (one per call, stopped at the
end of the test) and points this process at it (``IBMTwin.env()``: the SDK's credential, IAM and Global
Search variables plus ``SQSNN_IBM_API_URL``); ``ibm_twin`` is one default twin. Another process (a Celery
worker) reaches the same twin when started with ``twin.env()`` in its environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.twins.ibm import IBMTwin


@pytest.fixture
def ibm_twin_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., IBMTwin]]:
    """Start twins with ``IBMTwin(**kwargs)``; the last one started is the one the environment names."""
    started: list[IBMTwin] = []

    def start(**kwargs: Any) -> IBMTwin:
        twin = IBMTwin(**kwargs).start()
        started.append(twin)
        for name, value in twin.env().items():
            monkeypatch.setenv(name, value)
        return twin

    yield start
    for twin in started:
        twin.stop()


@pytest.fixture
def ibm_twin(ibm_twin_factory: Callable[..., IBMTwin]) -> IBMTwin:
    """A default twin (ideal ``ibm_twin_algiers`` and ``ibm_twin_kingston``), the environment pointing at it."""
    return ibm_twin_factory()
