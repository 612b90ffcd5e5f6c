"""Admission of a job at submission: the limits a worker would enforce, checked before the job is stored, so
an over-limit job is refused at once (422 naming the field and the limit) instead of failing later.

The checks are the worker's own functions on the same inputs; the worker still runs them (the owner's
spend may change while a job waits, a backend may fall back), so nothing here is a second implementation:

* inference: memory and time (:func:`workers.bounds.plan_inference`) for jobs that run to completion on a
  worker (simulators and the exact engine), and the job's ``budget`` (:func:`backends.estimate.enforce_budget`)
  on the backend's estimate, for circuit backends;
* training: memory and compute time (:func:`workers.bounds.plan_training`) from the job's shape; off ``exact``
  (the local rule with the backend in the loop) the job's ``budget`` must pay for at
  least its first epoch (the worker stops a job, with a checkpoint, before an epoch its budget cannot pay
  for: one that cannot pay for any would only fail), on :func:`workers.training.training_estimate`;
* the owner's daily spend in shots and US dollars (:func:`workers.spend.reserve_spend`) for jobs on remote
  QPUs: the whole job's estimate checked and recorded as its reservation in the submitting transaction, so
  two submissions cannot both pass on the same remaining allowance.

A backend that cannot be reached or priced now (no credentials, provider down) is not estimated here: the
worker decides (fallback policy) and checks the budget and spend on the backend it resolves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from workers.models import Job, Model
from workers.schemas.requests import EncoderSpec, ImageInputs, InferJobSpec, JobSpec, TrainJobSpec
from workers.settings import Settings

T = TypeVar("T")


class Refused(ValueError):
    """The job breaks a limit: ``field`` is its path in the request body (``()``: the request as a whole),
    the message names the limit and what the job would need."""

    def __init__(self, field: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.field = field


def inference_shape(model_config: dict[str, Any], spec: InferJobSpec) -> tuple[list[int], int, int] | None:
    """(layer sizes ``[D, n_1, ..., n_L]``, time steps T, samples) of an inference job on a stored model with
    configuration ``model_config`` (as training and uploads store it); None when the sizes are not recorded."""
    network = model_config.get("network", model_config)
    sizes = network.get("sizes") if isinstance(network, dict) else None
    if not sizes:
        return None
    encoder = spec.encoder or EncoderSpec.model_validate(model_config.get("encoder") or {})
    src = spec.inputs
    samples = len(src.images) if isinstance(src, ImageInputs) else src.stop - src.start
    return [int(n) for n in sizes], encoder.T, samples


def _priced(settings: Settings, spec: JobSpec, price: Callable[[Any], T]) -> T | None:
    """``price(backend)`` on the job's backend object (shared with the worker's process cache), or None when
    the backend cannot be reached or priced now; :class:`Refused` naming ``backend`` when it does not exist."""
    from backends.base import BackendUnavailable, ProviderError
    from workers.qpu_backends import backend_instance, options_key

    try:
        backend = backend_instance(settings, spec.backend, options_key(spec.options))
    except (BackendUnavailable, ProviderError):
        return None
    except ValueError as exc:  # e.g. an unknown fake device or local simulator
        raise Refused(("backend",), str(exc)) from None
    try:
        return price(backend)
    except (BackendUnavailable, ProviderError):
        return None


def _reserve(session: Session, settings: Settings, job: Job, shots: int, cost_usd: float | None) -> None:
    """Check and record the owner's daily spend reservation; :class:`Refused` (the request) when over."""
    from workers.spend import SpendLimitExceeded, reserve_spend

    try:
        reserve_spend(session, settings, job, shots, cost_usd)
    except SpendLimitExceeded as exc:
        raise Refused((), str(exc)) from None


def admit(session: Session, settings: Settings, job: Job, spec: JobSpec) -> None:
    """Raise :class:`Refused` when job ``job`` (added to ``session``, not yet committed) of request ``spec``
    breaks a memory, time, budget or daily spend limit; on a remote QPU, record its spend reservation."""
    if isinstance(spec, InferJobSpec):
        _admit_inference(session, settings, job, spec)
    elif isinstance(spec, TrainJobSpec):
        _admit_training(session, settings, job, spec)


def _admit_training(session: Session, settings: Settings, job: Job, spec: TrainJobSpec) -> None:
    """Memory and time; with the backend in the loop, the budget pays for one epoch and the owner's day covers
    the job."""
    from workers.bounds import WorkTooLarge
    from workers.qpu_backends import runs_on_qpu
    from workers.spend import limits_of
    from workers.training import budget_gap, training_estimate, training_plan

    try:
        training_plan(spec, settings)
    except WorkTooLarge as exc:
        raise Refused(exc.field, str(exc)) from None
    if spec.backend == "exact":
        return
    limited = runs_on_qpu(settings, spec.backend) and limits_of(session, settings, job.owner) != (None, None)
    if spec.budget is None and not limited:
        return
    try:
        estimate = _priced(settings, spec, lambda backend: training_estimate(spec, backend))
    except Refused:
        raise
    except ValueError as exc:  # a dataset that is not installed, an impossible configuration
        raise Refused(("dataset",), str(exc)) from None
    if estimate is None:
        return
    if spec.budget is not None:
        gap = budget_gap(estimate.per_epoch, spec.budget)
        if gap is not None:
            raise Refused(
                ("budget",),
                f"the budget cannot pay for one epoch of training on {spec.backend} ({estimate.per_epoch.shots} "
                f"shots, {estimate.per_epoch.tasks} tasks per epoch): {gap}; raise the budget or lower shots, "
                "samples, directions or the training set (POST /v1/estimates prices the job)",
            )
    if limited:
        _reserve(session, settings, job, estimate.total.shots, estimate.total.cost_usd)


def _admit_inference(session: Session, settings: Settings, job: Job, spec: InferJobSpec) -> None:
    """Memory and time off remote QPUs; the budget and the owner's day on the backend's estimate."""
    from backends.base import BudgetExceeded
    from backends.estimate import enforce_budget, estimate_network
    from workers.bounds import WorkTooLarge, plan_inference
    from workers.inference import run_policy
    from workers.qpu_backends import runs_on_qpu
    from workers.spend import limits_of

    model = session.get(Model, str(spec.model_id))
    shape = inference_shape(model.config, spec) if model is not None else None
    if shape is None:
        return
    sizes, steps, samples = shape
    on_qpu = runs_on_qpu(settings, spec.backend)
    if not on_qpu:
        try:
            plan_inference(sizes, steps, samples, spec.backend, settings)
        except WorkTooLarge as exc:
            raise Refused(exc.field, str(exc)) from None
    limited = on_qpu and limits_of(session, settings, job.owner) != (None, None)
    if spec.backend == "exact" or (spec.budget is None and not limited):
        return
    estimate = _priced(settings, spec, lambda backend: estimate_network(sizes, steps, samples, backend))
    if estimate is None:
        return
    try:
        enforce_budget(estimate, run_policy(spec).budget)
    except BudgetExceeded as exc:
        raise Refused(("budget",), str(exc)) from None
    if limited:
        _reserve(session, settings, job, estimate.shots, estimate.cost_usd)
