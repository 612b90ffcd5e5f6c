"""/v1/models: trained models, their configuration and metrics, and the weights file."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.deps import DbDep, KeyDep, ModelId, SettingsDep, authenticate, owned
from service.errors import ApiError, error_responses
from service.pagination import PageCursor, PageLimit, fetch_page
from workers.artifacts import ArtifactCorrupted, verified
from workers.models import Model
from workers.schemas.responses import ModelOut, ModelPage, ModelSummary

router = APIRouter(prefix="/v1/models", tags=["models"])
E404 = "no such model for this API key's owner"
SUMMARY_COLUMNS = [getattr(Model, name) for name in ModelSummary.model_fields]


@router.get("", responses=error_responses(401, 422, 503))
async def list_models(
    db: DbDep, settings: SettingsDep, key: KeyDep, limit: PageLimit = 20, cursor: PageCursor = None
) -> ModelPage:
    """The owner's models, newest first: summaries (no configuration or metrics), read in one query."""

    def work(s: Session) -> ModelPage:
        owner = authenticate(s, settings, key)
        rows, nxt = fetch_page(s, select(Model).where(Model.owner == owner), Model, SUMMARY_COLUMNS, cursor, limit)
        return ModelPage(items=[ModelSummary.model_validate(m) for m in rows], next_cursor=nxt)

    return await db.run(work, read_only=True)


@router.get("/{model_id}", responses=error_responses(401, 404, 422, 503, e404=E404))
async def get_model(model_id: ModelId, db: DbDep, settings: SettingsDep, key: KeyDep) -> ModelOut:
    """One model: network configuration, training metrics, file checksum."""

    def work(s: Session) -> ModelOut:
        return ModelOut.model_validate(owned(s, Model, model_id, authenticate(s, settings, key)))

    return await db.run(work, read_only=True)


@router.get(
    "/{model_id}/checkpoint",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "torch file of the model"},
        **error_responses(401, 404, 422, 503, e404=E404),
        500: {"description": "the stored file no longer matches its checksum"},
    },
)
async def download_checkpoint(model_id: ModelId, db: DbDep, settings: SettingsDep, key: KeyDep) -> FileResponse:
    """The model's weights file (``SQSNetwork.load`` reads it); ``X-Checksum-SHA256`` carries its sha256."""

    def work(s: Session) -> tuple[str, str, str]:
        model = owned(s, Model, model_id, authenticate(s, settings, key))
        return model.id, model.path, model.sha256

    row_id, path, sha256 = await db.run(work, read_only=True)
    try:  # hashing the file needs no database connection: a thread of its own
        checked = await run_in_threadpool(verified, path, sha256)
    except ArtifactCorrupted as exc:
        raise ApiError(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
    return FileResponse(
        checked,
        media_type="application/octet-stream",
        filename=f"sqsnn-model-{row_id}.pt",
        headers={"X-Checksum-SHA256": sha256, "ETag": f'"{sha256}"'},
    )
