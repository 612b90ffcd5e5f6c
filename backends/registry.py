"""Backend registry: names -> backends, option validation, and the fallback policy.

Names: ``exact``, ``aer``, ``aer-noisy:<fake>``, ``ibm:<backend>``, ``ibm-local:<fake>``,
``braket-local:sv|dm``, ``braket:<device ARN>``. Options are validated by the kind's pydantic model
(unknown keys are rejected, naming the field).

Fallback (``RunPolicy.fallback``): when the requested backend is unavailable (no credentials, unreachable,
not operational, quota), ``"none"`` raises :class:`BackendUnavailable` with the reason; ``"aer"`` or
``"exact"`` runs there instead and every result carries a :class:`FallbackRecord` saying what was
requested, what ran and why. Never silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from backends.base import BackendUnavailable, FallbackRecord
from backends.common import BaseBackend
from backends.options import AerOptions, BraketDeviceOptions, BraketOptions, ExactOptions, IBMOptions, RunPolicy

KINDS: dict[str, type[BaseModel]] = {
    "exact": ExactOptions,
    "aer": AerOptions,
    "aer-noisy": AerOptions,
    "ibm": IBMOptions,
    "ibm-local": IBMOptions,
    "braket-local": BraketOptions,
    "braket": BraketDeviceOptions,
}
NEEDS_TARGET = {"aer-noisy", "ibm", "ibm-local", "braket-local", "braket"}


def parse_name(name: str) -> tuple[str, str | None]:
    """``"kind:target"`` -> (kind, target); raises ValueError naming the accepted forms."""
    kind, sep, target = name.partition(":")
    if kind not in KINDS:
        raise ValueError(
            f"unknown backend {name!r}; use exact, aer, aer-noisy:<fake>, ibm:<backend>, ibm-local:<fake>, "
            "braket-local:sv|dm or braket:<device arn>"
        )
    if kind in NEEDS_TARGET and not target:
        raise ValueError(f"backend {kind!r} needs a target: {kind}:<name>")
    if kind not in NEEDS_TARGET and sep:
        raise ValueError(f"backend {kind!r} takes no target, got {name!r}")
    return kind, target or None


def get_backend(name: str, options: Mapping[str, Any] | BaseModel | None = None) -> BaseBackend:
    """Construct the backend ``name`` with validated ``options``."""
    from backends.aer import AerBackend
    from backends.braket import BraketBackend
    from backends.exact import ExactBackend
    from backends.ibm import IBMRuntimeBackend

    kind, target = parse_name(name)
    model = KINDS[kind]
    if options is None:
        opts = model()
    elif isinstance(options, BaseModel):
        if not isinstance(options, model):
            raise TypeError(f"backend {kind!r} takes {model.__name__}, got {type(options).__name__}")
        opts = options
    else:
        opts = model.model_validate(dict(options))
    if kind == "exact":
        assert isinstance(opts, ExactOptions)
        return ExactBackend(opts)
    if kind in ("aer", "aer-noisy"):
        assert isinstance(opts, AerOptions)
        return AerBackend(target, opts)
    if kind in ("ibm", "ibm-local"):
        assert isinstance(opts, IBMOptions) and target is not None
        return IBMRuntimeBackend(target, local=kind == "ibm-local", options=opts)
    assert isinstance(opts, BraketOptions) and target is not None
    return BraketBackend(target, local=kind == "braket-local", options=opts)


@dataclass
class Resolved:
    """The backend that will run, and the fallback record when it is not the one requested."""

    backend: BaseBackend
    fallback: FallbackRecord | None


def resolve(
    name: str, options: Mapping[str, Any] | BaseModel | None = None, policy: RunPolicy | None = None
) -> Resolved:
    """Backend ``name`` if available, else the policy's fallback (recorded), else BackendUnavailable."""
    policy = policy or RunPolicy()
    try:
        backend = get_backend(name, options)
        availability = backend.availability()
        reason = availability.reason
        if availability.available:
            return Resolved(backend, None)
    except BackendUnavailable as exc:
        reason = str(exc)
    return fall_back(name, reason, policy)


def fall_back(name: str, reason: str, policy: RunPolicy) -> Resolved:
    """Apply the policy after ``name`` turned out unavailable for ``reason``."""
    if policy.fallback == "none":
        raise BackendUnavailable(
            f"backend {name!r} is unavailable: {reason}. fallback='none' forbids running elsewhere; "
            "set fallback='aer' or 'exact' to run on a simulator instead"
        )
    backend = get_backend(policy.fallback)
    return Resolved(backend, FallbackRecord(requested=name, used=backend.name, reason=reason))
