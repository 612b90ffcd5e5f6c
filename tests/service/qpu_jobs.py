"""Helpers of the QPU state machine tests: a stored model, job rows as the API writes them, waiting."""

from __future__ import annotations

import time
import uuid
from functools import lru_cache
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sqsnn.network import NetworkConfig, SQSNetwork
from workers.artifacts import finalize, model_path
from workers.celery_app import enqueue, make_celery
from workers.events import set_state
from workers.hardware import provider_key
from workers.models import TERMINAL_STATES, HardwareSubmission, Job, Model, utcnow
from workers.schemas.requests import InferJobSpec
from workers.settings import Settings

SIZES = [64, 6, 10]  # digits 8x8 -> 6 -> 10 with direct synapses: two provider submissions per job


def store_model(sessions: sessionmaker[Session], settings: Settings, owner: str, net: SQSNetwork | None = None) -> str:
    """``net`` (default: an untrained, seeded 64-6-10 digits network) stored as ``owner``'s model with the
    encoder T = 4, p_max = 0.5; returns its id."""
    net = net or SQSNetwork(NetworkConfig(sizes=SIZES, direct=True, seed=3))
    model_id = str(uuid.uuid4())
    path = model_path(settings.artifacts_dir, model_id)
    tmp = path.with_suffix(".tmp")
    encoder = {"T": 4, "p_max": 0.5}
    net.save(tmp, encoder=encoder)
    sha, size = finalize(tmp, path)
    config = {"network": net.describe(), "encoder": encoder}  # as training stores it
    with sessions() as s:
        s.add(Model(id=model_id, owner=owner, config=config, metrics={}, path=str(path), sha256=sha,
                    size_bytes=size))  # fmt: skip
        s.commit()
    return model_id


def infer_spec(model_id: str, backend: str, n: int = 3, **extra: Any) -> dict[str, Any]:
    """An inference spec on the first ``n`` digits test images."""
    body = {
        "kind": "infer", "model_id": model_id, "backend": backend, "seed": 11,
        "inputs": {"source": "dataset", "name": "digits", "start": 0, "stop": n},
    }  # fmt: skip
    return InferJobSpec.model_validate({**body, **extra}).model_dump(mode="json")


@lru_cache(maxsize=2)
def _celery(settings: Settings) -> Celery:
    return make_celery(settings)


def submit(
    sessions: sessionmaker[Session], settings: Settings, owner: str, spec: dict[str, Any], *, queue: str = "sqsnn.sim",
    send: bool = True,
) -> str:  # fmt: skip
    """Write the job row as the API does and (with ``send``) enqueue ``run_job`` after the commit; returns the
    job id. Without ``send`` the job is left for the reaper, as when the broker was down at submission."""
    with sessions() as s:
        job = Job(owner=owner, kind="infer", state="queued", spec=spec, backend=spec["backend"], queue=queue,
                  request_hash="-", input_model_id=spec["model_id"], created_at=utcnow())  # fmt: skip
        s.add(job)
        s.flush()
        set_state(s, job, "queued")
        s.commit()
        job_id = job.id
    if not send:
        return job_id
    enqueue(_celery(settings), job_id, queue)
    with sessions() as s:
        s.get(Job, job_id).enqueued_at = utcnow()  # type: ignore[union-attr]
        s.commit()
    return job_id


def wait_final(sessions: sessionmaker[Session], job_ids: list[str], timeout: float) -> dict[str, Job]:
    """Wait until every job is final; returns the rows."""
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as s:
            jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(job_ids)))}
            for j in jobs.values():
                s.expunge(j)
        if all(j.state in TERMINAL_STATES for j in jobs.values()):
            return jobs
        pending = {j.id: (j.state, j.substate) for j in jobs.values() if j.state not in TERMINAL_STATES}
        assert time.monotonic() < deadline, f"not final after {timeout} s: {pending}"
        time.sleep(0.2)


def keys_of(job_id: str, layers: int = len(SIZES) - 1) -> list[str]:
    """The provider de-duplication keys of a job's layers."""
    return [provider_key(job_id, step) for step in range(layers)]


def submissions(sessions: sessionmaker[Session], job_id: str) -> list[HardwareSubmission]:
    """A job's submission rows by layer."""
    with sessions() as s:
        rows = list(
            s.scalars(
                select(HardwareSubmission).where(HardwareSubmission.job_id == job_id).order_by(HardwareSubmission.step)
            )
        )
        for r in rows:
            s.expunge(r)
        return rows
