"""Bearer API keys: ``sqsnn_<random>``; the database stores only HMAC-SHA256(secret_key, key)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.models import ApiKey
from workers.settings import Settings

KEY_PREFIX = "sqsnn_"


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


def owner_of(session: Session, settings: Settings, key: str) -> str | None:
    """The owner of an active key, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(settings, key)
    row = session.execute(
        select(ApiKey.owner, ApiKey.key_hash).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return str(row.owner)
