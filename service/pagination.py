"""Opaque keyset cursors over (created_at, id), newest first."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from service.errors import unprocessable

PageLimit = Annotated[int, Query(ge=1, le=100)]  # query parameter ``limit``: rows per page
PageCursor = Annotated[str | None, Query(max_length=200)]  # query parameter ``cursor``: a page's next_cursor


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """Cursor pointing just after the row (created_at, row_id)."""
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Inverse of ``encode_cursor``; 422 naming ``cursor`` when malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), row_id
    except (ValueError, UnicodeDecodeError):
        unprocessable(("query", "cursor"), "malformed cursor; pass next_cursor from the previous page")


def page(stmt: Select[Any], model: Any, cursor: str | None, limit: int) -> Select[Any]:
    """Apply ordering, the cursor and ``limit + 1`` (the extra row says whether a next page exists)."""
    if cursor:
        created, row_id = decode_cursor(cursor)
        stmt = stmt.where(or_(model.created_at < created, and_(model.created_at == created, model.id < row_id)))
    return stmt.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)


def fetch_page(
    session: Session, stmt: Select[Any], model: Any, cursor: str | None, limit: int
) -> tuple[list[Any], str | None]:
    """The rows of one page of ``stmt`` (at most ``limit``, newest first) and the cursor of the next page
    (None on the last page)."""
    rows = list(session.scalars(page(stmt, model, cursor, limit)))
    nxt = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt
