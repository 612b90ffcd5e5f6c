"""Bearer API keys: ``sqsnn_<random>``; the database stores only HMAC-SHA256(secret_key, key).

A verified key is remembered for ``KEY_CACHE_S`` seconds in the API process (per database), so a client
polling or submitting does not pay a key lookup per request: a key revoked in the database (``revoked_at``)
stops working within that time. Unknown keys are never remembered (each is looked up again).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.models import ApiKey
from workers.settings import Settings

KEY_PREFIX = "sqsnn_"
KEY_CACHE_S = 10.0
KEY_CACHE_SIZE = 10_000


def hash_key(settings: Settings, key: str) -> str:
    """The stored digest of ``key`` (hex HMAC-SHA256 keyed by the service secret)."""
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def create_key(session: Session, settings: Settings, owner: str) -> str:
    """Create and store a new key for ``owner``; returns the plain key (shown once, never stored)."""
    if not owner or len(owner) > 100:
        raise ValueError("owner must be 1 to 100 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(owner=owner, key_hash=hash_key(settings, key), prefix=key[:12]))
    session.commit()
    return key


class VerifiedKeys:
    """Owners of recently verified keys: ``(database URL, digest) -> (owner, monotonic expiry time)``,
    at most ``KEY_CACHE_SIZE`` entries (emptied when full), shared by the process's threads."""

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, entry: tuple[str, str]) -> str | None:
        """The owner remembered for ``entry`` if it has not expired."""
        hit = self._owners.get(entry)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, entry: tuple[str, str], owner: str) -> None:
        """Remember ``owner`` for ``KEY_CACHE_S`` seconds."""
        with self._lock:
            if len(self._owners) >= KEY_CACHE_SIZE:
                self._owners.clear()
            self._owners[entry] = (owner, time.monotonic() + KEY_CACHE_S)


_verified = VerifiedKeys()


def owner_of(session: Session, settings: Settings, key: str) -> str | None:
    """The owner of an active key, or None (a database lookup unless verified in the last ``KEY_CACHE_S``)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(settings, key)
    entry = (settings.sqlalchemy_url, digest)
    if (owner := _verified.get(entry)) is not None:
        return owner
    row = session.execute(
        select(ApiKey.owner, ApiKey.key_hash).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    _verified.put(entry, str(row.owner))
    return str(row.owner)
