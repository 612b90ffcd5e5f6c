"""Which backends run through the QPU job state machine, and the backend objects it talks to.

Remote QPUs (``ibm:``, ``braket:``) always do; ``Settings.qpu_backends`` adds registry kinds (e.g.
``ibm-local``) and plugged-in provider classes (``kind=module:Class``). One backend object is kept per name,
options and process, so provider sessions and compiled circuits are reused between transitions.
"""

from __future__ import annotations

import importlib
import json
import logging
from functools import lru_cache
from typing import Any

from workers.routing import is_hardware, kind_of
from workers.settings import Settings

log = logging.getLogger(__name__)

IN_PROCESS_KINDS = frozenset({"exact", "aer", "aer-noisy", "ibm-local", "braket-local"})
"""Kinds whose submissions live in the worker's memory only: submitted and fetched in one transition."""


def qpu_kinds(settings: Settings) -> dict[str, str | None]:
    """Extra kinds of ``Settings.qpu_backends``: kind -> ``module:Class`` (a provider class) or None."""
    kinds: dict[str, str | None] = {}
    for entry in filter(None, (e.strip() for e in settings.qpu_backends.split(","))):
        kind, _, plugin = entry.partition("=")
        kinds[kind.strip()] = plugin.strip() or None
    return kinds


def runs_on_qpu(settings: Settings, name: str) -> bool:
    """Whether jobs on backend ``name`` go through this state machine (remote QPU or a listed kind)."""
    return is_hardware(name) or kind_of(name) in qpu_kinds(settings)


def options_key(options: dict[str, Any] | None) -> str:
    """The canonical JSON of backend ``options`` (the cache key of :func:`backend_instance`)."""
    return json.dumps(options or {}, sort_keys=True)


@lru_cache(maxsize=32)
def backend_instance(settings: Settings, name: str, options_json: str = "{}") -> Any:
    """One backend object per name, options (:func:`options_key`) and process."""
    from backends.registry import get_backend

    options = json.loads(options_json) or None
    kind, _, target = name.partition(":")
    plugin = qpu_kinds(settings).get(kind)
    if plugin is None:
        return get_backend(name, options)
    module, _, cls = plugin.partition(":")
    return getattr(importlib.import_module(module), cls)(target, options)


def resolve_backend(settings: Settings, name: str, options: dict[str, Any] | None, policy: Any) -> tuple[Any, Any]:
    """(backend, fallback record or None): ``name`` when available, else the policy's fallback."""
    from backends.base import BackendUnavailable
    from backends.registry import fall_back

    try:
        backend = backend_instance(settings, name, options_key(options))
        availability = backend.availability()
        if availability.available:
            return backend, None
        reason = availability.reason
    except BackendUnavailable as exc:
        reason = str(exc)
    resolved = fall_back(name, reason, policy)
    return backend_instance(settings, resolved.backend.name), resolved.fallback


def close_session(backend: Any, session_id: str) -> None:
    """Close a provider session (IBM Session / Batch); a provider error is logged, never raised."""
    from backends.base import ProviderError

    try:
        backend.close_session(session_id)
    except ProviderError as exc:
        log.warning("could not close provider session %s: %s", session_id, exc)


def redacted(message: str) -> str:
    """``message`` with provider secrets and account ids masked (``backends.redact``)."""
    from backends.redact import redact

    return redact(message)
