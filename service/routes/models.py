"""/v1/models: trained models, their configuration and metrics, and the weights file."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from sqlalchemy import select

from service.deps import OwnerDep, SessionDep, owned
from service.pagination import PageCursor, PageLimit, fetch_page
from service.schemas import ModelOut, ModelPage
from workers.artifacts import ArtifactCorrupted, verified
from workers.models import Model

router = APIRouter(prefix="/v1/models", tags=["models"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such model for this API key's owner"}}


@router.get("")
def list_models(
    session: SessionDep,
    owner: OwnerDep,
    limit: PageLimit = 20,
    cursor: PageCursor = None,
) -> ModelPage:
    """The owner's models, newest first."""
    rows, nxt = fetch_page(session, select(Model).where(Model.owner == owner), Model, cursor, limit)
    return ModelPage(items=[ModelOut.model_validate(m) for m in rows], next_cursor=nxt)


@router.get("/{model_id}", responses=NOT_FOUND)
def get_model(model_id: str, session: SessionDep, owner: OwnerDep) -> ModelOut:
    """One model: network configuration, training metrics, file checksum."""
    return ModelOut.model_validate(owned(session, Model, model_id, owner))


@router.get(
    "/{model_id}/checkpoint",
    response_class=FileResponse,
    responses={
        **NOT_FOUND,
        200: {"content": {"application/octet-stream": {}}, "description": "torch file of the model"},
        500: {"description": "the stored file no longer matches its checksum"},
    },
)
def download_checkpoint(model_id: str, session: SessionDep, owner: OwnerDep) -> FileResponse:
    """The model's weights file (``SQSNetwork.load`` reads it); ``X-Checksum-SHA256`` carries its sha256."""
    model = owned(session, Model, model_id, owner)
    try:
        path = verified(model.path, model.sha256)
    except ArtifactCorrupted as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"sqsnn-model-{model.id}.pt",
        headers={"X-Checksum-SHA256": model.sha256, "ETag": f'"{model.sha256}"'},
    )
