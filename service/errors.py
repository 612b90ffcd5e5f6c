"""Errors: every error response is JSON ``{"message", "field", "detail"}``.

``message`` is one line saying what was wrong (and how to fix it), ``field`` names the request part at fault
as a dotted path (``body.train.training.epochs``, ``header.Authorization``, ``path.job_id``; null when no
single field is), ``detail`` keeps FastAPI's shape: pydantic's ``[{"loc", "msg", "type"}]`` list for 422s,
the message otherwise. A database or broker that does not answer is a 503, never a plain-text 500.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import redis
from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as BrokerOperationalError
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One invalid field, as pydantic reports it."""

    loc: list[str | int] = Field(description='where: e.g. ["body", "train", "training", "epochs"]')
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The body of every error response."""

    message: str = Field(description="what was wrong, in one line")
    field: str | None = Field(description="dotted path of the request part at fault (body.x.y, header.X, path.x)")
    detail: list[FieldError] | str = Field(description="422: every invalid field; otherwise the message")


class ApiError(HTTPException):
    """An HTTP error naming the request part at fault."""

    def __init__(
        self, status_code: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, message, headers=headers)
        self.field = field


def dotted(loc: list[Any] | tuple[Any, ...]) -> str:
    """``["body", "train", "epochs"]`` → ``"body.train.epochs"``."""
    return ".".join(str(p) for p in loc)


def unprocessable(loc: tuple[str | int, ...], msg: str) -> NoReturn:
    """Raise a 422 shaped like pydantic's, naming the field at ``loc``."""
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": list(loc), "msg": msg, "type": "value_error"}],
    )


def not_found(what: str, field: str) -> NoReturn:
    """Raise a 404 (also used for objects that belong to someone else)."""
    raise ApiError(status.HTTP_404_NOT_FOUND, f"{what} not found", field)


def _body(message: str, field: str | None, detail: list[dict[str, Any]] | str) -> dict[str, Any]:
    return {"message": message, "field": field, "detail": detail}


def _summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{dotted(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:5])


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


async def validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    """422 with pydantic's error list, the first bad field and a message naming each one."""
    assert isinstance(exc, RequestValidationError)
    if bad_json := [e for e in exc.errors() if e.get("type") == "json_invalid"]:
        e = bad_json[0]  # loc is ("body", character offset)
        message = f"the body is not valid JSON: {e.get('ctx', {}).get('error', e['msg'])} at character {e['loc'][-1]}"
        return JSONResponse(_body(message, "body", message), status.HTTP_400_BAD_REQUEST)
    errors = _field_errors(list(exc.errors()))
    field = dotted(errors[0]["loc"]) if errors else None
    return JSONResponse(_body(_summary(errors), field, errors), status.HTTP_422_UNPROCESSABLE_CONTENT)


async def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Every HTTPException (ours, FastAPI's and Starlette's 404/405) as an ``ErrorOut``."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, list):  # raised by ``unprocessable``
        errors = _field_errors(exc.detail)
        content = _body(_summary(errors), dotted(errors[0]["loc"]) if errors else None, errors)
    else:
        message = str(exc.detail)
        # FastAPI raises a plain 400 only when the body cannot be read as JSON (e.g. not UTF-8)
        field = getattr(exc, "field", "body" if exc.status_code == status.HTTP_400_BAD_REQUEST else None)
        content = _body(message, field, message)
    return JSONResponse(content, exc.status_code, headers=exc.headers)


def _unavailable(what: str) -> JSONResponse:
    message = f"the {what} is not answering; retry later"
    return JSONResponse(
        _body(message, None, message), status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"}
    )


async def database_down_handler(_request: Request, exc: Exception) -> JSONResponse:
    """503 when the database cannot be reached (connection refused or lost, pool exhausted)."""
    lost = isinstance(exc, OperationalError | InterfaceError) or getattr(exc, "connection_invalidated", False)
    if isinstance(exc, DBAPIError) and not lost:
        return await internal_error_handler(_request, exc)
    log.warning("database unavailable: %s", type(exc).__name__)
    return _unavailable("database")


async def broker_down_handler(_request: Request, exc: Exception) -> JSONResponse:
    """503 when Redis or the Celery broker cannot be reached."""
    log.warning("broker unavailable: %s", type(exc).__name__)
    return _unavailable("broker")


async def internal_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """A bug: 500 as JSON (the traceback goes to the log, never to the client)."""
    log.error("unhandled error", exc_info=exc)
    message = "internal error; it has been logged"
    return JSONResponse(_body(message, None, message), status.HTTP_500_INTERNAL_SERVER_ERROR)


def install(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for db_error in (DBAPIError, PoolTimeoutError):
        app.add_exception_handler(db_error, database_down_handler)
    for broker_error in (redis.ConnectionError, redis.TimeoutError, BrokerOperationalError):
        app.add_exception_handler(broker_error, broker_down_handler)
    app.add_exception_handler(Exception, internal_error_handler)


DESCRIPTIONS = {
    400: "the body cannot be parsed (not UTF-8, not valid JSON)",
    401: "missing or invalid API key (`Authorization: Bearer <key>`)",
    403: "the owner's storage quota is used up",
    404: "no such resource for this API key's owner",
    409: "conflicts with the resource's state",
    413: "request body larger than SQSNN_MAX_BODY_BYTES",
    422: "invalid request; `field` and `detail[].loc` name the field",
    429: "too many active jobs for this owner (see Retry-After)",
    503: "the database or the broker is not answering (see Retry-After)",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses, each with the ``ErrorOut`` body.
    ``descriptions`` overrides a status's description: ``error_responses(404, e404="no such job")``."""
    return {
        code: {"model": ErrorOut, "description": descriptions.get(f"e{code}", DESCRIPTIONS[code])} for code in codes
    }
