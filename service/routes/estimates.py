"""POST /v1/estimates: the resources and cost of a job before it is submitted (nothing is stored or run).

Training: :func:`workers.training.estimate_training_job` (submissions, tasks, shots and cost per epoch and in
total, and whether the budget covers them). Inference: one pass of the job's samples through the stored
model's layers on the backend (:func:`backends.estimate.estimate_network`), per layer and in total.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.deps import DbDep, KeyDep, SettingsDep, authenticate
from service.errors import error_responses, unprocessable
from service.limits import check_inputs
from workers.models import Model
from workers.routing import check_backend
from workers.schemas.requests import EncoderSpec, ImageInputs, InferJobSpec, JobSpec, TrainJobSpec

router = APIRouter(prefix="/v1/estimates", tags=["estimates"])


def _inference(spec: InferJobSpec, sizes: list[int], steps: int) -> dict[str, Any]:
    from backends.estimate import estimate_network
    from backends.registry import get_backend

    src = spec.inputs
    samples = len(src.images) if isinstance(src, ImageInputs) else src.stop - src.start
    try:
        backend = get_backend(spec.backend, spec.options)
    except (ValueError, TypeError) as exc:
        unprocessable(("body", "backend"), str(exc))
    est = estimate_network(sizes, steps, samples, backend)
    return {
        "backend": est.backend,
        "samples": samples,
        "T": steps,
        "layers": [dataclasses.asdict(e) for e in est.layers],
        "total": {
            "qubits_per_circuit": est.qubits_per_circuit,
            "circuits": est.circuits,
            "tasks": est.pubs,
            "jobs": est.jobs,
            "shots": est.shots,
            "cost_usd": est.cost_usd,
        },
        "price_note": est.price_note,
    }


def _training(spec: TrainJobSpec) -> dict[str, Any]:
    from workers.training import estimate_training_job

    try:
        return estimate_training_job(spec)
    except ValueError as exc:  # a dataset that is not installed, an impossible configuration
        unprocessable(("body",), str(exc))


@router.post("", responses=error_responses(400, 401, 413, 422, 503))
async def estimate_job(
    spec: Annotated[JobSpec, Body()], db: DbDep, settings: SettingsDep, key: KeyDep
) -> dict[str, Any]:
    """Price a job body as ``POST /v1/jobs`` would take it: shots, tasks, provider jobs and cost in USD
    (null where no public price applies). Nothing is stored, enqueued or sent to a provider."""

    def work(s: Session) -> tuple[list[int], int] | None:
        owner = authenticate(s, settings, key)
        reason = check_backend(spec.backend, spec.kind)
        if reason:
            unprocessable(("body", "backend"), reason)
        if not isinstance(spec, InferJobSpec):
            return None
        check_inputs(s, settings, owner, spec)
        model = s.get(Model, str(spec.model_id))
        assert model is not None  # check_inputs answered 422 otherwise
        encoder = spec.encoder or EncoderSpec.model_validate(model.config.get("encoder", {}))
        return list(model.config["network"]["sizes"]), encoder.T

    shape = await db.run(work, read_only=True)
    if isinstance(spec, InferJobSpec):
        assert shape is not None
        return await run_in_threadpool(_inference, spec, *shape)
    return await run_in_threadpool(_training, spec)
