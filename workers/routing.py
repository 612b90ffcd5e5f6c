"""Which backends exist, which queue serves each, and what the API may say about them.

Names are those of ``backends.registry``. Remote QPUs (``ibm:``, ``braket:``) go to the hardware queue
and are submitted and polled (``workers.hardware``); simulators run to completion on the simulator queue.
Training runs on every backend with ``method: local`` (``workers.schemas.requests.TrainJobSpec`` says why BPTT stays on
``exact``); on a remote QPU it runs in the worker that holds the job's lease, each provider submission
recorded first (``workers.qpu_training``).
"""

from __future__ import annotations

import dataclasses
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from workers.celery_app import HW_QUEUE, SIM_QUEUE

HARDWARE_KINDS = ("ibm", "braket")
LOCAL_CATALOG = ("exact", "aer", "aer-noisy:fake_kingston", "ibm-local:fake_kingston", "braket-local:sv")


def kind_of(name: str) -> str:
    """The registry kind of a backend name (``ibm:ibm_brisbane`` → ``ibm``)."""
    return name.split(":", 1)[0]


def is_hardware(name: str) -> bool:
    """True for backends that run on a remote QPU (queued for hours: submit, then poll)."""
    return kind_of(name) in HARDWARE_KINDS


def queue_for(name: str) -> str:
    """The Celery queue for jobs on ``name``."""
    return HW_QUEUE if is_hardware(name) else SIM_QUEUE


def check_backend(name: str, kind: str) -> str | None:
    """None when a job of ``kind`` can run on ``name``, else the reason it cannot."""
    if name == "exact":
        return None
    from backends.registry import parse_name

    try:
        parse_name(name)
    except ValueError as exc:
        return str(exc)
    return None


def credentials_configured(kind: str) -> bool:
    """Whether the provider's credentials are present (environment or the SDK's files); never their values."""
    home = Path.home()
    if kind == "ibm":
        return bool(os.environ.get("QISKIT_IBM_TOKEN")) or (home / ".qiskit" / "qiskit-ibm.json").is_file()
    if kind == "braket":
        env = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")
        return any(os.environ.get(v) for v in env) or (home / ".aws" / "credentials").is_file()
    return True


@lru_cache(maxsize=1)
def _local_entries() -> tuple[dict[str, Any], ...]:
    from backends.registry import get_backend

    entries = []
    for name in LOCAL_CATALOG:
        backend = get_backend(name)
        availability = backend.availability()
        entries.append(
            {
                "name": name,
                "kind": "simulator",
                "queue": queue_for(name),
                "capabilities": dataclasses.asdict(backend.capabilities()),
                "availability": {"available": availability.available, "reason": availability.reason},
                "credentials_configured": True,
            }
        )
    return tuple(entries)


def catalog() -> list[dict[str, Any]]:
    """The local simulators (probed once per process) and the cloud providers (no network call here)."""
    cloud = [
        {
            "name": f"{kind}:<{'backend' if kind == 'ibm' else 'device arn'}>",
            "kind": "hardware",
            "queue": HW_QUEUE,
            "capabilities": {"provider": kind, "hardware": True},
            "availability": {
                "available": None,
                "reason": "checked against the provider when a job is submitted to a named device",
            },
            "credentials_configured": credentials_configured(kind),
        }
        for kind in HARDWARE_KINDS
    ]
    return [*_local_entries(), *cloud]
