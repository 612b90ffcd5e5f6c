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
:func:`~workers.qpu_submissions.poll_delay`); transient :class:`~backends.base.ProviderError`\\ s are
retried with exponential backoff and jitter up to ``Settings.provider_max_retries`` times; final ones fail
the job with the redacted reason and cancel the provider job. The periodic ``poll_hardware`` task re-sends
the task of any open submission nobody looked at for ``Settings.hardware_stale_s`` (a lost message, a
restarted broker).

This module holds the start and the transitions; the rows, their locks and timing are in
:mod:`workers.qpu_submissions`, the provider calls of one layer in :mod:`workers.qpu_layer`, and which
backends run here (and their objects) in :mod:`workers.qpu_backends`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
from sqlalchemy import select

from workers.context import JobContext, LeaseLost, sessions_for
from workers.db import session_scope
from workers.events import add_event, commit_and_publish, set_state
from workers.inference import Prepared, prepare, run_policy
from workers.models import TERMINAL_STATES, HardwareSubmission, Job, utcnow
from workers.qpu_backends import (
    backend_instance,
    close_session,
    options_key,
    redacted,
    resolve_backend,
    runs_on_qpu,
)
from workers.qpu_layer import LayerRun, Outcome
from workers.qpu_submissions import (
    AT_PROVIDER,
    OPEN,
    ProviderStopped,
    backoff,
    carry_of,
    locked,
    new_submission,
    provider_key,
    stale_submissions,
    submitted_job,
)
from workers.settings import Settings
from workers.spend import reserve_spend
from workers.spikes import pack

__all__ = [  # the state machine's entry points (workers.tasks, tests) and the names they need with them
    "OPEN",
    "advance",
    "backoff",
    "provider_key",
    "resolve_backend",
    "runs_on_qpu",
    "stale_submissions",
    "start_hardware",
]

log = logging.getLogger(__name__)


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
        sub = new_submission(ctx.job_id, 0, backend.name, carry)
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
            _stop(settings, sub_id, ProviderStopped("failed", f"{type(exc).__name__}: {redacted(str(exc))}"))
            return sub_id, None
        if outcome.next_id is None:
            return sub_id, outcome.wait_s
        sub_id = outcome.next_id


def _is_transient(exc: Exception) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, ConnectionError | TimeoutError | OperationalError)


def _transition(settings: Settings, sub_id: int) -> Outcome:
    from backends.base import ProviderError

    with session_scope(sessions_for(settings)) as s:
        held = locked(s, sub_id)
        if held is None:
            return Outcome()
        sub, job = held
        if job.state in TERMINAL_STATES:
            raise ProviderStopped("cancelled", f"job already {job.state}")
        if job.cancel_requested:
            raise ProviderStopped("cancelled", "cancelled by its owner while on the QPU")
        step = sub.step
        run = LayerRun.of(s, settings, job, sub)
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
        held = locked(s, sub_id)
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
            backend = backend_instance(settings, sub.backend, options_key(carry_of(s, sub).get("options")))
            if stop.cancel and sub.status in AT_PROVIDER:
                try:
                    backend.cancel(submitted_job(sub))
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
        close_session(backend, session_id)
