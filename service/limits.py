"""Request limits: body size (while it streams in), inference sample count and image width, storage per owner.

``BodyLimit`` answers 413 as soon as a declared ``Content-Length`` exceeds ``SQSNN_MAX_BODY_BYTES``, without
reading the body, and otherwise counts the bytes as they arrive and stops at the first chunk beyond the limit,
so an API process never holds more than one limit's worth of one request body.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import status
from sqlalchemy import BindParameter, bindparam, func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, unprocessable
from workers.models import Job, Model, StoredCheckpoint
from workers.schemas.requests import DatasetSlice, ImageInputs, InferJobSpec
from workers.settings import Settings


class BodyTooLarge(ApiError):
    """The request body exceeds the limit (raised from ``receive`` while the body streams in)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"request body larger than {limit} bytes (SQSNN_MAX_BODY_BYTES); send large inputs as a dataset slice",
            "body",
        )


def _error_response(exc: BodyTooLarge) -> tuple[Message, Message]:
    body = json.dumps({"message": exc.detail, "field": exc.field, "detail": exc.detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": exc.status_code,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """Pure ASGI middleware enforcing ``limit`` bytes per request body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            for message in _error_response(BodyTooLarge(self.limit)):
                await send(message)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # read outside a route (FastAPI's own handler turns it into a response)
            if started:
                raise
            for message in _error_response(exc):
                await send(message)


def check_inputs(session: Session, settings: Settings, owner: str, spec: InferJobSpec) -> None:
    """422 naming the field when an inference job's inputs exceed a limit or do not fit its model."""
    src = spec.inputs
    count = len(src.images) if isinstance(src, ImageInputs) else src.stop - src.start
    if count > settings.max_infer_samples:
        loc = ("body", "inputs", "images") if isinstance(src, ImageInputs) else ("body", "inputs", "stop")
        unprocessable(loc, f"{count} samples; at most {settings.max_infer_samples} per job (SQSNN_MAX_INFER_SAMPLES)")
    model = session.get(Model, str(spec.model_id))
    if model is None or model.owner != owner:
        unprocessable(("body", "model_id"), f"model {spec.model_id} not found")
    if isinstance(src, DatasetSlice):
        return
    width = len(src.images[0])
    if width > settings.max_image_width:
        unprocessable(
            ("body", "inputs", "images"),
            f"images have {width} values; at most {settings.max_image_width} (SQSNN_MAX_IMAGE_WIDTH)",
        )
    if model.config.get("kind") == "frames":
        unprocessable(("body", "inputs", "source"), "this model was trained on frames; use a dataset slice")
    expected = model.config.get("network", {}).get("sizes", [width])[0]
    if width != expected:
        unprocessable(("body", "inputs", "images"), f"images have {width} values; the model expects {expected}")


_OWNER: BindParameter[str] = bindparam("owner")
STORED_BYTES = select(
    select(func.coalesce(func.sum(Job.stored_bytes), 0)).where(Job.owner == _OWNER).scalar_subquery(),
    select(func.coalesce(func.sum(Model.size_bytes), 0)).where(Model.owner == _OWNER).scalar_subquery(),
    select(func.coalesce(func.sum(StoredCheckpoint.size_bytes), 0))
    .join(Job, Job.id == StoredCheckpoint.job_id)
    .where(Job.owner == _OWNER)
    .scalar_subquery(),
)
"""Bytes stored by ``:owner``: job specs and results, model files, checkpoint files (three sums). Built once:
SQLAlchemy memoises a statement object's cache key, so only the owner changes between submissions."""


def stored_bytes(session: Session, owner: str) -> int:
    """Bytes the owner stores: job specs and results (as JSON text), model files and checkpoint files."""
    row: Any = session.connection().execute(STORED_BYTES, {"owner": owner}).one()
    return int(sum(row))


def check_quota(session: Session, settings: Settings, owner: str, new_bytes: int) -> None:
    """403 when storing ``new_bytes`` more would exceed the owner's storage quota."""
    used = stored_bytes(session, owner)
    if used + new_bytes > settings.storage_quota_bytes:
        raise ApiError(
            status.HTTP_403_FORBIDDEN,
            f"storage quota exceeded: {used} bytes stored + {new_bytes} new > {settings.storage_quota_bytes} "
            "(SQSNN_STORAGE_QUOTA_BYTES)",
        )
