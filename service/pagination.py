"""Keyset cursors over (created_at, id), newest first.

A cursor is ``<created_at in integer microseconds since 1970-01-01 UTC>_<id>`` of the last row of a page,
e.g. ``1764449000123456_0b6c2f0e-4d0c-4b8e-9a59-3c1f8f5a1e2d``; clients pass ``next_cursor`` back as it is.
The format is stated in the OpenAPI document as a pattern, so every cursor matching it is well formed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CURSOR_PATTERN = rf"^[0-9]{{1,16}}_{UUID_PATTERN}$"

PageLimit = Annotated[int, Query(ge=1, le=100, description="rows per page")]
PageCursor = Annotated[
    str | None,
    Query(
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page: `<created_at, microseconds since the Unix epoch>_<id>`",
    ),
]


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """Cursor pointing just after the row (created_at, row_id); naive timestamps (SQLite) are UTC."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return f"{(created_at - EPOCH) // MICROSECOND}_{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of ``encode_cursor`` for a cursor matching ``CURSOR_PATTERN``."""
    micros, row_id = cursor.split("_", 1)
    return EPOCH + int(micros) * MICROSECOND, row_id


def page(stmt: Select[Any], model: Any, cursor: str | None, limit: int) -> Select[Any]:
    """Apply ordering, the cursor and ``limit + 1`` (the extra row says whether a next page exists)."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        stmt = stmt.where(or_(model.created_at < created, and_(model.created_at == created, model.id < row_id)))
    return stmt.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)


def fetch_page(
    session: Session, stmt: Select[Any], model: Any, columns: list[Any], cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    """One page of ``stmt`` (at most ``limit`` rows, newest first) in one query that reads only ``columns``
    (which must include ``created_at`` and ``id``): rows with those attributes, not ORM objects (an attribute
    outside ``columns`` is an error, never a query per row), and the cursor of the next page (None on the
    last page)."""
    rows = list(session.execute(page(stmt.with_only_columns(*columns), model, cursor, limit)))
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt
