"""POST /v1/models: upload a model trained elsewhere (``sqsnn train --out``) as a safetensors model file.

The body is the file itself (``application/octet-stream``, at most ``SQSNN_MAX_BODY_BYTES``). It is read with
:func:`sqsnn.model_io.model_from_bytes`: JSON header, configuration, tensor names, shapes and dtypes checked
before any weight is read, weights finite; nothing in it is executed. Only SQSNNs are accepted (inference
runs them). The stored file is the canonical form of the upload: the same weights, with the encoder (T,
p_max) and data kind the inference jobs read made explicit in its metadata.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.deps import DbDep, KeyDep, SettingsDep, authenticate
from service.errors import error_responses, unprocessable
from service.limits import check_quota
from sqsnn.datasets import list_datasets
from sqsnn.model_io import ModelFileError, model_bytes, model_from_bytes
from sqsnn.network import SQSNetwork
from workers.artifacts import finalize, model_path
from workers.models import Model, new_id
from workers.schemas.requests import EncoderSpec
from workers.schemas.responses import ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])

UPLOAD_BODY = {
    "required": True,
    "description": "a model file written by `sqsnn train --out` (safetensors with an `sqsnn` JSON metadata entry)",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


@dataclasses.dataclass(frozen=True)
class Canonical:
    """A validated upload: the file to store, the row's configuration, and the metrics it recorded."""

    data: bytes
    config: dict[str, Any]
    metrics: dict[str, Any]
    test_accuracy: float | None


def _encoder(meta: dict[str, Any]) -> EncoderSpec:
    """The encoder the model was trained with: ``encoder`` (service models) or ``train_config`` (the CLI)."""
    given = meta.get("encoder") or {k: v for k, v in (meta.get("train_config") or {}).items() if k in ("T", "p_max")}
    try:
        return EncoderSpec.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        unprocessable(("body", "metadata", "encoder"), f"the file's encoder settings are invalid: {problems}")


def _data_kind(meta: dict[str, Any]) -> str:
    """``static`` or ``frames``: recorded in the file, else the kind of the dataset it names."""
    if meta.get("kind") in ("static", "frames"):
        return str(meta["kind"])
    kinds = {info.name: info.kind for info in list_datasets()}
    return str(kinds.get(str(meta.get("dataset")), "static"))


def canonical(data: bytes, max_width: int) -> Canonical:
    """Validate an uploaded model file (422 naming the problem) and build its stored form."""
    try:
        model, meta = model_from_bytes(data)
    except ModelFileError as exc:
        unprocessable(("body",), str(exc))
    if not isinstance(model, SQSNetwork):
        unprocessable(("body", "metadata", "kind"), f"a {model.kind} model; only SQSNNs (kind 'sqsnn') run here")
    if model.config.sizes[0] > max_width:
        unprocessable(
            ("body", "config", "sizes"),
            f"{model.config.sizes[0]} inputs; at most {max_width} (SQSNN_MAX_IMAGE_WIDTH)",
        )
    encoder, kind = _encoder(meta), _data_kind(meta)
    stored_meta = {**meta, "encoder": encoder.model_dump(), "kind": kind, "uploaded": True}
    accuracy = meta.get("test_accuracy")
    epochs = meta.get("metrics")
    return Canonical(
        data=model_bytes(model, **stored_meta),
        config={
            "network": dataclasses.asdict(model.config),
            **{k: v for k, v in stored_meta.items() if k != "metrics"},
        },
        metrics={"epochs": epochs if isinstance(epochs, list) else [], "test_accuracy": accuracy},
        test_accuracy=float(accuracy) if isinstance(accuracy, int | float) else None,
    )


def _write(path: Path, data: bytes) -> tuple[str, int]:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    return finalize(tmp, path)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": UPLOAD_BODY},
    responses=error_responses(401, 403, 413, 422, 503),
)
async def upload_model(
    request: Request,
    response: Response,
    db: DbDep,
    settings: SettingsDep,
    key: KeyDep,
    name: Annotated[str | None, Query(min_length=1, max_length=100, description="a name for the model")] = None,
) -> ModelOut:
    """Store a model file trained elsewhere; it can then run inference jobs (``model_id``) and be
    downloaded. 201 with the model and its ``Location``; 422 naming what is wrong with the file."""
    owner = await db.run(lambda s: authenticate(s, settings, key))
    data = await request.body()
    if not data:
        unprocessable(("body",), "empty body: send the model file as the request body (application/octet-stream)")
    model = await run_in_threadpool(canonical, data, settings.max_image_width)
    model_id = new_id()
    path = model_path(settings.artifacts_dir, model_id)
    sha, size = await run_in_threadpool(_write, path, model.data)

    def work(s: Session) -> ModelOut:
        if s.get_bind().dialect.name == "postgresql":  # the quota holds under concurrent uploads
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:o))"), {"o": owner})
        check_quota(s, settings, owner, size)
        row = Model(
            id=model_id,
            owner=owner,
            job_id=None,
            name=name,
            config=model.config,
            metrics=model.metrics,
            test_accuracy=model.test_accuracy,
            path=str(path),
            sha256=sha,
            size_bytes=size,
        )
        s.add(row)
        s.commit()
        return ModelOut.model_validate(row)

    try:
        out = await db.run(work)
    except Exception:  # nothing refers to the file: remove it
        path.unlink(missing_ok=True)
        raise
    response.headers["Location"] = f"/v1/models/{out.id}"
    return out
