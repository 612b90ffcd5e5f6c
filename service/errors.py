"""Error helpers: every 4xx names what was wrong; 422s keep FastAPI's ``loc`` list naming the field."""

from __future__ import annotations

from typing import Any, NoReturn

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def unprocessable(loc: tuple[str | int, ...], msg: str) -> NoReturn:
    """Raise a 422 shaped like pydantic's: ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``."""
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": list(loc), "msg": msg, "type": "value_error"}],
    )


def not_found(what: str) -> NoReturn:
    """Raise a 404 (also used for objects that belong to someone else)."""
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


async def validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    """422 with pydantic's error list plus one readable ``message`` naming each bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": errors, "message": _summary(errors)},
    )
