"""Which backends exist, which queue serves each, and what the API may say about them."""

from __future__ import annotations

from typing import Any

from workers.celery_app import HW_QUEUE, SIM_QUEUE

HARDWARE_PROVIDERS = ("ibm", "braket")


def provider(name: str) -> str:
    """The registry prefix of a backend name (``ibm:ibm_brisbane`` → ``ibm``)."""
    return name.split(":", 1)[0]


def is_hardware(name: str) -> bool:
    """True for backends that run on a remote QPU (queued for hours: submit-and-poll)."""
    return provider(name) in HARDWARE_PROVIDERS


def queue_for(name: str) -> str:
    """The Celery queue for jobs on ``name``."""
    return HW_QUEUE if is_hardware(name) else SIM_QUEUE


def check_backend(name: str, kind: str) -> str | None:
    """None when a job of ``kind`` can run on ``name``, else the reason it cannot."""
    if name != "exact":
        return f"unknown backend {name!r}; available: exact"
    return None


def catalog() -> list[dict[str, Any]]:
    """Descriptions of the available backends (no secrets)."""
    return [
        {
            "name": "exact",
            "kind": "simulator",
            "queue": SIM_QUEUE,
            "capabilities": {"mid_circuit_measurement": True, "reset": True, "exact_probabilities": True},
            "availability": {"available": True},
            "credentials_configured": True,
        }
    ]
