"""The QPU job state machine: one Celery task per provider submission, every transition under row locks.

An inference job on a remote QPU (``ibm:``, ``braket:``, and the kinds listed in ``SQSNN_QPU_BACKENDS``)
runs layer by layer; each layer is one provider submission and one ``HardwareSubmission`` row.
:func:`start_hardware` (run by ``run_job``) encodes the inputs, checks the job's budget and reserves the
owner's daily spend, and writes the first row as ``pending``; from then on the ``advance_submission``
task moves the rows on::

    pending --submit--> submitted <-> queued <-> running --fetch--> fetched --> done
                                                                      |-- next layer's row: pending
                                                                      '-- last layer: job succeeded
    any open status --> failed | cancelled   (provider job cancelled, provider session closed)

Each transition is one transaction holding the submission row (``SELECT ... FOR UPDATE SKIP LOCKED``: a
second task for the same row skips it) and the job row; it re-reads the status and writes the next one,
so no submission is submitted, fetched or advanced twice. The row exists before the provider call and
its key (``idempotency_key``, which backends turn into IBM job tags / Braket ``clientToken``) makes the
call idempotent: a worker killed after the provider accepted a job resubmits with the same key and gets
the same provider job back. Fetched spikes are stored in the row (``result``), so the next layer never
depends on a process's memory; in-process backends (local simulators, fallbacks) submit and fetch in one
transition for the same reason, which makes them work with prefork pools on several machines.

While a provider job waits, the task re-schedules itself (``self.retry(countdown=...)``, see
:func:`poll_delay`); transient :class:`~backends.base.ProviderError`\\ s are retried with exponential
backoff and jitter up to ``Settings.provider_max_retries`` times; final ones fail the job with the redacted
reason and cancel the provider job. The periodic ``poll_hardware`` task re-sends the task of any open
submission nobody looked at for ``Settings.hardware_stale_s`` (a lost message, a restarted broker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.artifacts import verified
from workers.context import JobContext, LeaseLost, sessions_for
from workers.db import session_scope
from workers.events import add_event, commit_and_publish, set_state
from workers.inference import Prepared, prepare, result_payload, run_policy
from workers.models import TERMINAL_STATES, HardwareSubmission, Job, JobEvent, Model, utcnow
from workers.routing import is_hardware, kind_of
from workers.settings import Settings
from workers.spend import reserve_spend
from workers.spikes import pack, unpack

log = logging.getLogger(__name__)

IN_PROCESS_KINDS = frozenset({"exact", "aer", "aer-noisy", "ibm-local", "braket-local"})
OPEN = ("pending", "submitted", "queued", "running", "fetched")
AT_PROVIDER = ("submitted", "queued", "running")


class ProviderStopped(Exception):
    """The job must stop: ``state`` (failed / cancelled) with ``reason``; ``cancel`` the provider job."""

    def __init__(self, state: str, reason: str, *, cancel: bool = True) -> None:
        super().__init__(reason)
        self.state, self.reason, self.cancel = state, reason, cancel


# --- backends -------------------------------------------------------------------------------------------
def qpu_kinds(settings: Settings) -> dict[str, str | None]:
    """Extra kinds of ``Settings.qpu_backends``: kind -> ``module:Class`` (a provider class) or None."""
    kinds: dict[str, str | None] = {}
    for entry in filter(None, (e.strip() for e in settings.qpu_backends.split(","))):
        kind, _, plugin = entry.partition("=")
        kinds[kind.strip()] = plugin.strip() or None
    return kinds


def runs_on_qpu(settings: Settings, name: str) -> bool:
    """Whether jobs on backend ``name`` go through this state machine (remote QPU or a listed kind)."""
    return is_hardware(name) or kind_of(name) in qpu_kinds(settings)


@lru_cache(maxsize=32)
def backend_instance(settings: Settings, name: str, options_json: str = "{}") -> Any:
    """One backend object per name, options and process (keeps provider sessions and compiled circuits)."""
    from backends.registry import get_backend

    options = json.loads(options_json) or None
    kind, _, target = name.partition(":")
    plugin = qpu_kinds(settings).get(kind)
    if plugin is None:
        return get_backend(name, options)
    module, _, cls = plugin.partition(":")
    return getattr(importlib.import_module(module), cls)(target, options)


def resolve_backend(settings: Settings, name: str, options: dict[str, Any] | None, policy: Any) -> tuple[Any, Any]:
    """(backend, fallback record or None): ``name`` when available, else the policy's fallback."""
    from backends.base import BackendUnavailable
    from backends.registry import fall_back

    options_json = json.dumps(options or {}, sort_keys=True)
    try:
        backend = backend_instance(settings, name, options_json)
        availability = backend.availability()
        if availability.available:
            return backend, None
        reason = availability.reason
    except BackendUnavailable as exc:
        reason = str(exc)
    resolved = fall_back(name, reason, policy)
    return backend_instance(settings, resolved.backend.name), resolved.fallback


# --- scheduling of looks --------------------------------------------------------------------------------
def poll_delay(settings: Settings) -> float:
    """Seconds until the next look at a waiting provider job: the poll interval, +-20 % jitter."""
    return settings.hardware_poll_interval_s * random.uniform(0.8, 1.2)


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based) of a failed provider call: the poll interval doubled per
    attempt, capped at ``provider_backoff_max_s``, with full jitter over its upper half."""
    cap = min(settings.provider_backoff_max_s, settings.hardware_poll_interval_s * 2 ** (attempt - 1))
    return cap * random.uniform(0.5, 1.0)


# --- start ----------------------------------------------------------------------------------------------
def provider_key(job_id: str, step: int) -> str:
    """The de-duplication key of layer ``step`` of a job (the provider's job tag / client token source)."""
    return f"sqsnn/{job_id}/{step}"


def _new_submission(job_id: str, step: int, backend: str, payload: dict[str, Any] | None) -> HardwareSubmission:
    return HardwareSubmission(
        job_id=job_id,
        step=step,
        provider=kind_of(backend),
        backend=backend,
        idempotency_token=hashlib.sha256(provider_key(job_id, step).encode()).hexdigest(),
        tags=[],
        status="pending",
        payload=payload,
        polled_at=utcnow(),
    )


def start_hardware(ctx: JobContext, dispatch: Callable[[int], None]) -> None:
    """Check the budget and the owner's daily spend, encode the inputs and write layer 0's submission
    (``pending``); ``dispatch(submission_id)`` then sends the task that submits it. Returns at once."""
    from backends.estimate import enforce_budget, estimate_network
    from sqsnn.encoders import encode

    p: Prepared = prepare(ctx)
    gen = torch.Generator().manual_seed(p.spec.seed)
    x = encode(p.x, p.kind, p.encoder.T, p.encoder.p_max, gen).to(torch.float64)
    policy = run_policy(p.spec)
    ctx.substate("compiling", backend=p.spec.backend)
    backend, fallback = resolve_backend(ctx.settings, p.spec.backend, p.spec.options, policy)
    estimate = estimate_network(p.net.config.sizes, x.shape[0], x.shape[1], backend)
    enforce_budget(estimate, policy.budget)
    carry = {
        "x": pack(x),
        "seed": p.spec.seed,
        "kind": p.kind,
        "encoder": p.encoder.model_dump(),
        "labels": p.y.tolist() if p.y is not None else None,
        "layer_costs": [layer.cost_usd for layer in estimate.layers],
        "options": p.spec.options if fallback is None else None,
        "fallback": dataclasses.asdict(fallback) if fallback is not None else None,
    }
    with session_scope(ctx.sessions) as s:
        job = s.get(Job, ctx.job_id, with_for_update=True)
        assert job is not None
        if job.lease_owner != ctx.token:
            raise LeaseLost(f"job {ctx.job_id} is now leased by {job.lease_owner}")
        reserve_spend(s, ctx.settings, job, estimate.shots, estimate.cost_usd)
        sub = _new_submission(ctx.job_id, 0, backend.name, carry)
        sub.cost_usd = estimate.layers[0].cost_usd
        s.add(sub)
        job.backend_used = backend.name
        job.lease_owner, job.lease_expires_at = None, None  # the state machine owns the job from here
        events = [
            add_event(
                s,
                ctx.job_id,
                "estimate",
                {
                    "backend": backend.name,
                    "shots": estimate.shots,
                    "jobs": estimate.jobs,
                    "cost_usd": estimate.cost_usd,
                },
            ),
            set_state(s, job, "running", substate="waiting_qpu", layer=0, backend=backend.name),
        ]
        commit_and_publish(s, ctx.settings.pubsub_url, events)
        sub_id = sub.id
    dispatch(sub_id)


# --- the machine ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What a transition left: ``next_id`` to advance now, or ``wait_s`` until the next look (None: nothing
    left to do for this submission)."""

    next_id: int | None = None
    wait_s: float | None = None


def advance(settings: Settings, sub_id: int) -> tuple[int, float | None]:
    """Take transitions from submission ``sub_id`` on (following the job to its next layers) until one
    waits for the provider or the job is finished. Returns (the submission to look at next, seconds
    until then), or (id, None) when nothing is left to do."""
    while True:
        try:
            outcome = _transition(settings, sub_id)
        except ProviderStopped as stop:
            _stop(settings, sub_id, stop)
            return sub_id, None
        except Exception as exc:
            if _is_transient(exc):
                raise
            log.exception("submission %s", sub_id)
            _stop(settings, sub_id, ProviderStopped("failed", f"{type(exc).__name__}: {_redact(str(exc))}"))
            return sub_id, None
        if outcome.next_id is None:
            return sub_id, outcome.wait_s
        sub_id = outcome.next_id


def _is_transient(exc: Exception) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, ConnectionError | TimeoutError | OperationalError)


def _redact(message: str) -> str:
    from backends.redact import redact

    return redact(message)


def _locked(s: Session, sub_id: int) -> tuple[HardwareSubmission, Job] | None:
    """The submission (skipped when another transaction holds it) and its job, both locked; None when the
    submission is held elsewhere or no longer open."""
    sub = s.scalar(select(HardwareSubmission).where(HardwareSubmission.id == sub_id).with_for_update(skip_locked=True))
    if sub is None or sub.status not in OPEN:
        return None
    job = s.scalar(select(Job).where(Job.id == sub.job_id).with_for_update())
    assert job is not None
    return sub, job


def _submitted(sub: HardwareSubmission) -> Any:
    from backends.base import SubmittedJob

    fields = dict((sub.payload or {})["submitted"])
    return SubmittedJob(**{**fields, "chunks": [tuple(c) for c in fields["chunks"]]})


def _transition(settings: Settings, sub_id: int) -> Outcome:
    from backends.base import ProviderError

    with session_scope(sessions_for(settings)) as s:
        held = _locked(s, sub_id)
        if held is None:
            return Outcome()
        sub, job = held
        if job.state in TERMINAL_STATES:
            raise ProviderStopped("cancelled", f"job already {job.state}")
        if job.cancel_requested:
            raise ProviderStopped("cancelled", "cancelled by its owner while on the QPU")
        step = sub.step
        run = _JobRun.of(s, settings, job, sub)
        sub.polled_at = utcnow()
        try:
            if sub.status == "pending":
                return run.submit(s, sub, job)
            if sub.status in AT_PROVIDER:
                return run.poll(s, sub, job)
            return run.proceed(s, sub, job)
        except ProviderError as exc:
            s.rollback()
            if not exc.retryable:
                raise ProviderStopped("failed", f"provider error on layer {step}: {exc}") from exc
            return _retry_later(settings, sub_id, str(exc))


def _retry_later(settings: Settings, sub_id: int, message: str) -> Outcome:
    """Count a transient provider error; fail the job once ``provider_max_retries`` are spent."""
    with session_scope(sessions_for(settings)) as s:
        held = _locked(s, sub_id)
        if held is None:
            return Outcome()
        sub, job = held
        sub.attempts += 1
        sub.last_error = message
        sub.polled_at = utcnow()
        if sub.attempts > settings.provider_max_retries:
            s.commit()
            raise ProviderStopped(
                "failed", f"provider error on layer {sub.step} after {settings.provider_max_retries} retries: {message}"
            )
        ev = add_event(s, job.id, "provider", {"layer": sub.step, "retry": sub.attempts, "error": message})
        commit_and_publish(s, settings.pubsub_url, [ev])
        return Outcome(wait_s=backoff(settings, sub.attempts))


def _stop(settings: Settings, sub_id: int, stop: ProviderStopped) -> None:
    """End the job as ``stop.state``: cancel the provider job (when asked and it is at the provider), close
    the provider session, mark the submission. The job is left alone when it is already final."""
    from backends.base import ProviderError

    with session_scope(sessions_for(settings)) as s:
        sub = s.scalar(select(HardwareSubmission).where(HardwareSubmission.id == sub_id).with_for_update())
        if sub is None:
            return
        job = s.scalar(select(Job).where(Job.id == sub.job_id).with_for_update())
        assert job is not None
        backend = None
        if sub.status in OPEN:
            backend = backend_instance(settings, sub.backend, _options_json(s, sub))
            if stop.cancel and sub.status in AT_PROVIDER:
                try:
                    backend.cancel(_submitted(sub))
                except ProviderError as exc:
                    log.warning("could not cancel provider job of submission %s: %s", sub_id, exc)
            sub.status = "cancelled" if stop.state == "cancelled" else "failed"
            sub.last_error = stop.reason if stop.state == "failed" else sub.last_error
        session_id = sub.session_id
        events = []
        if job.state not in TERMINAL_STATES:
            events.append(set_state(s, job, stop.state, reason=stop.reason))
        commit_and_publish(s, settings.pubsub_url, events)
    if backend is not None and session_id:
        _close_session(backend, session_id)


def _close_session(backend: Any, session_id: str) -> None:
    from backends.base import ProviderError

    try:
        backend.close_session(session_id)
    except ProviderError as exc:
        log.warning("could not close provider session %s: %s", session_id, exc)


def _options_json(s: Session, sub: HardwareSubmission) -> str:
    first = sub if sub.step == 0 else _row(s, sub.job_id, 0)
    return json.dumps((first.payload or {}).get("options") or {}, sort_keys=True)


def _row(s: Session, job_id: str, step: int) -> HardwareSubmission:
    row = s.scalar(
        select(HardwareSubmission).where(HardwareSubmission.job_id == job_id, HardwareSubmission.step == step)
    )
    assert row is not None, f"job {job_id} has no submission for layer {step}"
    return row


@lru_cache(maxsize=8)
def _network(path: str, sha256: str) -> Any:
    from sqsnn.network import SQSNetwork

    net, _ = SQSNetwork.load(verified(path, sha256))
    net.eval()
    return net


@dataclass
class _JobRun:
    """What every transition of one job needs: its network, encoded inputs, backend and step."""

    settings: Settings
    net: Any
    x: torch.Tensor
    carry: dict[str, Any]
    backend: Any
    step: int

    @classmethod
    def of(cls, s: Session, settings: Settings, job: Job, sub: HardwareSubmission) -> _JobRun:
        model = s.get(Model, job.input_model_id) if job.input_model_id else None
        if model is None:
            raise ProviderStopped("failed", "the job's model was deleted", cancel=True)
        net = _network(model.path, model.sha256)
        first = sub if sub.step == 0 else _row(s, job.id, 0)
        carry = dict(first.payload or {})
        steps = int(carry["encoder"]["T"])
        x = torch.as_tensor(unpack(carry["x"], steps, net.config.sizes[0]), dtype=torch.float64)
        options = json.dumps(carry.get("options") or {}, sort_keys=True)
        return cls(settings, net, x, carry, backend_instance(settings, sub.backend, options), sub.step)

    def _spikes(self, row: HardwareSubmission) -> torch.Tensor:
        assert row.result is not None
        n = self.net.config.sizes[row.step + 1]
        return torch.as_tensor(unpack(row.result["spikes"], self.x.shape[0], n), dtype=torch.float64)

    def _inputs(self, s: Session, job: Job) -> torch.Tensor:
        return self.x if self.step == 0 else self._spikes(_row(s, job.id, self.step - 1))

    def _check_budget(self, job: Job) -> None:
        from workers.specs import InferJobSpec

        budget = InferJobSpec.model_validate(job.spec).budget
        cost = self.carry["layer_costs"][self.step]
        shots = self.backend.estimate(self.net.config.sizes[self.step + 1], self.x.shape[0], self.x.shape[1]).shots
        if budget is not None and budget.max_shots is not None and job.shots + shots > budget.max_shots:
            raise ProviderStopped(
                "failed", f"budget exhausted: {job.shots} shots used, layer {self.step} needs {shots} more, "
                f"max_shots={budget.max_shots}"
            )  # fmt: skip
        max_usd = budget.max_cost_usd if budget is not None else None
        if max_usd is not None and cost is not None and job.cost_usd + cost > max_usd:
            raise ProviderStopped(
                "failed", f"budget exhausted: ${job.cost_usd:.2f} spent, layer {self.step} costs ${cost:.2f}, "
                f"max_cost_usd={max_usd}"
            )  # fmt: skip

    def submit(self, s: Session, sub: HardwareSubmission, job: Job) -> Outcome:
        """pending -> submitted (or straight to fetched for in-process backends)."""
        from backends.common import derive_seed

        self._check_budget(job)
        layer = self.net.layers[self.step]
        with torch.no_grad():
            z = layer.currents(self._inputs(s, job), self.x if layer.direct_weight is not None else None)
            params = layer.params()
        session_id = _row(s, job.id, self.step - 1).session_id if self.step > 0 else None
        submitted = self.backend.submit(
            z.numpy(), params, shots=1, mode=self.net.config.mode, seed=derive_seed(self.carry["seed"], self.step),
            idempotency_key=provider_key(job.id, self.step), session_id=session_id,
        )  # fmt: skip
        shown = [_redact(job_id) for job_id in submitted.job_ids]  # Braket task ARNs name the AWS account
        sub.provider_job_id = shown[0] if shown else None
        sub.tags = shown
        sub.session_id = submitted.session_id
        sub.calibration = submitted.calibration
        sub.payload = {**(sub.payload or {}), "submitted": dataclasses.asdict(submitted)}
        if kind_of(self.backend.name) in IN_PROCESS_KINDS:  # nothing outlives this process: fetch now
            return self._store(s, sub, job, self.backend.fetch(submitted))
        sub.status = "submitted"
        ev = set_state(
            s, job, "running", substate="waiting_qpu", layer=self.step, provider_job_ids=shown,
            session_id=submitted.session_id,
        )  # fmt: skip
        commit_and_publish(s, self.settings.pubsub_url, [ev])
        return Outcome(wait_s=poll_delay(self.settings))

    def poll(self, s: Session, sub: HardwareSubmission, job: Job) -> Outcome:
        """submitted / queued / running -> the provider's state; done -> fetched."""
        submitted = _submitted(sub)
        state = self.backend.poll(submitted)
        events = []
        if sub.provider_state != state:
            sub.provider_state = job.provider_state = state
            events.append(add_event(s, job.id, "provider", {"layer": self.step, "state": state}))
        if state == "queued":
            sub.status = "queued"
            info = self.backend.queue_info(submitted)
            if info is not None:
                data = {"layer": self.step, "position": info.position, "estimated_start": info.estimated_start}
                last = s.scalar(
                    select(JobEvent.data)
                    .where(JobEvent.job_id == job.id, JobEvent.kind == "queue")
                    .order_by(JobEvent.id.desc())
                    .limit(1)
                )
                if last != data:
                    events.append(add_event(s, job.id, "queue", data))
        elif state == "running":
            sub.status = "running"
            if job.substate != "executing_qpu":
                events.append(set_state(s, job, "running", substate="executing_qpu", layer=self.step))
        elif state == "done":  # fetch and store under the same lock: the result is taken exactly once
            return self._store(s, sub, job, self.backend.fetch(submitted), events)
        else:
            raise ProviderStopped("failed", self._ended(submitted, state), cancel=False)
        commit_and_publish(s, self.settings.pubsub_url, events)
        return Outcome(wait_s=poll_delay(self.settings))

    def _ended(self, submitted: Any, state: str) -> str:
        """Why the provider job of this layer ended ``state`` (failed / cancelled): the provider's own reason,
        which fetching the job raises (redacted by the backend), else the bare state (no job ids: Braket
        task ARNs name the AWS account)."""
        from backends.base import ProviderError

        try:
            self.backend.fetch(submitted)
        except ProviderError as exc:
            return f"provider error on layer {self.step}: {exc}"
        return f"provider job of layer {self.step} ended {state}"

    def _store(
        self, s: Session, sub: HardwareSubmission, job: Job, result: Any, events: list[JobEvent] | None = None
    ) -> Outcome:
        """Persist a fetched result (spikes, shots, billed QPU seconds) with ``events`` in the transaction that
        holds the row, and move on at once."""
        spikes = torch.as_tensor(result.single_shot, dtype=torch.float64)
        packed = pack(spikes)
        sub.result = {"spikes": packed}
        sub.status = "fetched"
        sub.provider_state = "done"
        sub.shots = result.shots
        sub.usage_seconds = result.qpu_seconds
        job.shots += result.shots
        job.cost_usd += sub.cost_usd or 0.0
        job.qpu_seconds += result.qpu_seconds or 0.0
        job.progress = (self.step + 1) / len(self.net.layers)
        ev = add_event(s, job.id, "spikes", {"layer": self.step, "start": 0, "packed": packed})
        commit_and_publish(s, self.settings.pubsub_url, [*(events or []), ev])
        return Outcome(next_id=sub.id)

    def proceed(self, s: Session, sub: HardwareSubmission, job: Job) -> Outcome:
        """fetched -> done, with the next layer's submission written (pending) or the job finished."""
        sub.status = "done"
        if self.step + 1 < len(self.net.layers):
            nxt = _new_submission(job.id, self.step + 1, sub.backend, None)
            nxt.cost_usd = self.carry["layer_costs"][self.step + 1]
            s.add(nxt)
            s.commit()
            return Outcome(next_id=nxt.id)
        result = self._result(s, job)
        job.result, job.progress = result, 1.0
        ev = set_state(s, job, "succeeded")
        session_id = sub.session_id
        commit_and_publish(s, self.settings.pubsub_url, [ev])
        if session_id:
            _close_session(self.backend, session_id)
        return Outcome()

    def _result(self, s: Session, job: Job) -> dict[str, Any]:
        from backends.execute import conditional_probabilities
        from sqsnn.network import NetworkOutput
        from workers.specs import EncoderSpec, InferJobSpec

        rows = s.scalars(
            select(HardwareSubmission).where(HardwareSubmission.job_id == job.id).order_by(HardwareSubmission.step)
        )
        hidden = [self._spikes(row) for row in rows]
        with torch.no_grad():
            probs, h = [], self.x
            for layer, s_out in zip(self.net.layers, hidden, strict=True):
                z = layer.currents(h, self.x if layer.direct_weight is not None else None)
                probs.append(conditional_probabilities(z, layer.params(), self.net.config.mode, s_out))
                h = s_out
            preds = [int(v) for v in self.net.predict(NetworkOutput(hidden, probs)).tolist()]
        labels = self.carry.get("labels")
        y = torch.tensor(labels, dtype=torch.int64) if labels is not None else None
        spec = InferJobSpec.model_validate(job.spec)
        done = Prepared(spec, self.net, self.carry["kind"], EncoderSpec(**self.carry["encoder"]), self.x, y)
        result = result_payload(done, preds, [pack(hh) for hh in hidden])
        result["backend"] = self.backend.name
        if self.carry.get("fallback"):
            result["fallback"] = self.carry["fallback"]
        return result


# --- periodic -------------------------------------------------------------------------------------------
def stale_submissions(settings: Settings) -> list[int]:
    """Open submissions nobody looked at for ``hardware_stale_s`` (their task was lost): send it again."""
    from datetime import timedelta

    cutoff = utcnow() - timedelta(seconds=settings.hardware_stale_s)
    with session_scope(sessions_for(settings)) as s:
        return list(
            s.scalars(
                select(HardwareSubmission.id).where(
                    HardwareSubmission.status.in_(OPEN),
                    (HardwareSubmission.polled_at.is_(None)) | (HardwareSubmission.polled_at < cutoff),
                )
            )
        )
