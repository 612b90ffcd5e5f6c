"""Admission of an inference job at submission: the limits a worker would enforce, checked before the job is
stored, so an over-limit job is refused at once (422 naming the field and the limit) instead of failing later.

The checks are the worker's own functions on the same inputs; the worker still runs them (the owner's
spend may change while a job waits, a backend may fall back), so nothing here is a second implementation:

* memory and time (:func:`workers.bounds.plan_inference`) for jobs that run to completion on a worker
  (simulators and the exact engine);
* the job's ``budget`` (:func:`backends.estimate.enforce_budget`) on the backend's estimate, for circuit
  backends;
* the owner's daily spend in shots and US dollars (:func:`workers.spend.reserve_spend`) for jobs on the QPU
  state machine: checked and recorded as the job's reservation in the submitting transaction, so two
  submissions cannot both pass on the same remaining allowance.

A backend that cannot be reached or priced now (no credentials, provider down) is not estimated here: the
worker decides (fallback policy) and checks the budget and spend on the backend it resolves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from workers.models import Job, Model
from workers.schemas.requests import EncoderSpec, ImageInputs, InferJobSpec
from workers.settings import Settings


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


def _estimate(settings: Settings, spec: InferJobSpec, sizes: list[int], steps: int, samples: int) -> Any:
    """The backend's estimate of the whole job (``backends.estimate.NetworkEstimate``), or None when the
    backend cannot be reached or priced now; :class:`Refused` naming ``backend`` when it does not exist."""
    from backends.base import BackendUnavailable, ProviderError
    from backends.estimate import estimate_network
    from workers.qpu_backends import backend_instance, options_key

    try:
        backend = backend_instance(settings, spec.backend, options_key(spec.options))
        return estimate_network(sizes, steps, samples, backend)
    except (BackendUnavailable, ProviderError):
        return None
    except ValueError as exc:  # e.g. an unknown fake device or local simulator
        raise Refused(("backend",), str(exc)) from None


def admit(session: Session, settings: Settings, job: Job, spec: InferJobSpec) -> None:
    """Raise :class:`Refused` when inference job ``job`` (added to ``session``, not yet committed) breaks a
    memory, time, budget or daily spend limit; on the QPU state machine, record its spend reservation."""
    from backends.base import BudgetExceeded
    from backends.estimate import enforce_budget
    from workers.bounds import WorkTooLarge, plan_inference
    from workers.inference import run_policy
    from workers.qpu_backends import runs_on_qpu
    from workers.spend import SpendLimitExceeded, limits_of, reserve_spend

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
    estimate = _estimate(settings, spec, sizes, steps, samples)
    if estimate is None:
        return
    try:
        enforce_budget(estimate, run_policy(spec).budget)
    except BudgetExceeded as exc:
        raise Refused(("budget",), str(exc)) from None
    if limited:
        try:
            reserve_spend(session, settings, job, estimate.shots, estimate.cost_usd)
        except SpendLimitExceeded as exc:
            raise Refused((), str(exc)) from None
