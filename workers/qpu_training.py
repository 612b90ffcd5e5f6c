"""Training on a remote QPU (``ibm:<backend>``, ``braket:<device ARN>``): every provider submission of the local
rule is recorded before it is waited on, so a resumed job adopts what a dead attempt submitted.

Hardware-in-the-loop training (:mod:`backends.training`) calls its backend's ``run_layer`` several times per
batch: once per layer for the single-shot forward spikes, then once per probability call of the estimator
(and once per layer and chunk in the final test evaluation). :class:`RecordedBackend` wraps the provider
backend and turns each call into one recorded provider submission:

1. **key**: ``sqsnn/<job id>/train/<phase>/<index>``: the phase is where the run stands (``e<epoch>/b<batch>``,
   or ``evaluation``; the worker moves it with :meth:`RecordedBackend.at`), the index the call's order within
   it. A run resumed from its checkpoint replays the same batches with the same parameters and generator
   state, so it makes the same calls under the same keys.
2. **pending**: a :class:`~workers.models.HardwareSubmission` row (status ``train_pending``, its
   ``idempotency_token`` the key's SHA-256) is committed *before* the provider call; the key goes to the
   provider as the submission's idempotency key (an IBM job tag, Braket ``clientToken`` s), so submitting it
   again returns the job already created.
3. **waiting**: the provider's job ids and the ``SubmittedJob`` are committed (``train_waiting``) *before*
   the first look at the job.
4. the job is looked at once at once, then at doubling intervals up to ``Settings.hardware_poll_interval_s``;
   the job's lease is kept by the worker's heartbeat process (:meth:`workers.context.JobContext.heartbeat`)
   however long the provider queues; every look checks for a cancellation (the provider job is cancelled)
   or a lost lease. Transient provider errors are retried with the state machine's backoff
   (:func:`workers.hardware.backoff`) up to ``Settings.provider_max_retries`` times; final ones mark the row
   ``failed`` and end the training with the provider's (redacted) reason.
5. **done**: the fetched result's shots, the priced cost and the billed QPU seconds are added to the row and
   to the job in one transaction (so a job's ``shots`` is the sum over its rows, each counted once).

Adopting after a restart: a key whose row is ``train_waiting`` or ``done`` is fetched again from the provider by
its stored job ids (no new provider job; the provider keeps the results: IBM with the job, Braket in S3); a
``train_pending`` row (the worker died around the provider call) is submitted again under its key, which the
provider de-duplicates. Status changes are compare-and-set under the row lock, so two attempts that overlap
(a lease that lapsed while its worker still ran) share the rows and never move one back. Training rows keep
their own statuses, outside the QPU state machine's open ones
(:data:`workers.hardware.OPEN`): the training job's lease owns them, not the submission poller, and when the
lease expires the reaper re-enqueues the job, whose next attempt adopts them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backends.base import Availability, Capabilities, LayerEstimate, LayerResult, ProviderError, SubmittedJob
from backends.common import BaseBackend, check_inputs
from backends.redact import redact
from sqsnn.neuron import MemoryMode
from workers.context import JobCancelled, JobContext
from workers.db import session_scope
from workers.events import add_event, commit_and_publish
from workers.hardware import backoff
from workers.models import HardwareSubmission, Job, utcnow
from workers.routing import kind_of

PENDING = "train_pending"  # row written, the provider call not yet confirmed
WAITING = "train_waiting"  # at the provider: job ids recorded
FIRST_LOOK_S = 0.05  # seconds before the second look at a submission (then doubled up to the poll interval)


def submission_key(job_id: str, phase: str, index: int) -> str:
    """The idempotency key of call ``index`` of ``phase`` of training job ``job_id``."""
    return f"sqsnn/{job_id}/train/{phase}/{index}"


def _token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _stored(submitted: SubmittedJob) -> dict[str, Any]:
    """A ``SubmittedJob`` as stored in a row's payload (its calibration snapshot left out: one per device
    is enough, and training makes thousands of submissions)."""
    return dataclasses.asdict(dataclasses.replace(submitted, calibration=None))


def _restored(payload: dict[str, Any]) -> SubmittedJob:
    fields = dict(payload["submitted"])
    return SubmittedJob(**{**fields, "chunks": [tuple(c) for c in fields["chunks"]]})


@dataclasses.dataclass
class RecordedCounts:
    """Provider submissions of this attempt: ``submitted`` new ones, ``adopted`` ones an earlier attempt
    had already made (fetched again, or submitted again under the same key)."""

    submitted: int = 0
    adopted: int = 0


class RecordedBackend(BaseBackend):
    """``inner`` (a remote provider backend) with each ``run_layer`` a recorded, adoptable submission of the
    job of ``ctx`` (module docstring). Estimates and capabilities are ``inner``'s; ``sleep`` waits between
    looks (seconds)."""

    def __init__(self, ctx: JobContext, inner: BaseBackend, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.ctx = ctx
        self.inner = inner
        self.name = inner.name
        self.layout = inner.layout
        self.sleep = sleep
        self.phase = "e1/b0"
        self.index = 0
        self.counts = RecordedCounts()
        self.session_id = self._last_session()

    # --- what the training code asks of a backend ------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def availability(self) -> Availability:
        return self.inner.availability()

    def estimate(self, neurons: int, steps: int, batch: int, shots: int = 1) -> LayerEstimate:
        return self.inner.estimate(neurons, steps, batch, shots)

    def neurons_per_circuit(self) -> int:
        return self.inner.neurons_per_circuit()

    def at(self, phase: str) -> None:
        """The run now stands at ``phase`` (``e<epoch>/b<batch>`` or ``evaluation``): calls are numbered from 0."""
        self.phase, self.index = phase, 0

    def run_layer(
        self,
        z: Any,
        angles: Any,
        *,
        shots: int = 1,
        mode: MemoryMode = "quantum",
        seed: int | None = None,
        memory_angles: np.ndarray | None = None,
    ) -> LayerResult:
        """One recorded submission of ``z (T, B, n)`` at ``angles`` (see :meth:`backends.base.Backend.submit`):
        adopted when the key's row exists, else recorded, submitted and recorded again before the wait."""
        start = time.perf_counter()
        key = submission_key(self.ctx.job_id, self.phase, self.index)
        self.index += 1
        zz, ang = check_inputs(z, angles)
        row_id, status, payload = self._row(key, zz.shape, shots)
        if status == PENDING:
            submitted = self._provider_submit(row_id, key, zz, ang, shots, mode, seed, memory_angles)
        elif status in (WAITING, "done"):
            assert payload is not None
            submitted = _restored(payload)
            self.counts.adopted += 1
        else:
            raise ProviderError(f"{self.name}: submission {key} already ended {status}", retryable=False)
        result = self._wait(row_id, key, submitted)
        self._done(row_id, result)
        result.wall_s = time.perf_counter() - start
        return result

    def close(self) -> None:
        """End the provider session the job's submissions ran in (IBM), when there is one."""
        if self.session_id is not None:
            with contextlib.suppress(ProviderError):  # an expired session needs no closing
                self.inner.close_session(self.session_id)
            self.session_id = None

    # --- rows ---------------------------------------------------------------------------------------------
    def _last_session(self) -> str | None:
        """The provider session of the job's newest submission (a resumed job submits in it again)."""
        with session_scope(self.ctx.sessions) as s:
            return s.scalar(
                select(HardwareSubmission.session_id)
                .where(HardwareSubmission.job_id == self.ctx.job_id, HardwareSubmission.session_id.is_not(None))
                .order_by(HardwareSubmission.id.desc())
                .limit(1)
            )

    def _row(self, key: str, shape: tuple[int, ...], shots: int) -> tuple[int, str, dict[str, Any] | None]:
        """(id, status, payload) of ``key``'s row, written (pending, with the submission's priced cost) when
        there is none yet."""
        token = _token(key)
        query = select(HardwareSubmission.id, HardwareSubmission.status, HardwareSubmission.payload).where(
            HardwareSubmission.idempotency_token == token
        )
        with session_scope(self.ctx.sessions) as s:
            found = s.execute(query).first()
            if found is not None:
                return int(found.id), str(found.status), found.payload
            steps, batch, neurons = shape
            row = HardwareSubmission(
                job_id=self.ctx.job_id,
                step=self.index - 1,
                provider=kind_of(self.name),
                backend=self.name,
                idempotency_token=token,
                tags=[],
                status=PENDING,
                payload={"key": key},
                cost_usd=self.inner.estimate(neurons, steps, batch, shots).cost_usd,
                polled_at=utcnow(),
            )
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # written by an attempt that overlapped this one: adopt it
                s.rollback()
                again = s.execute(query).one()
                return int(again.id), str(again.status), again.payload
            return int(row.id), PENDING, None

    def _update(self, row_id: int, expect: tuple[str, ...] = (PENDING, WAITING), **values: Any) -> None:
        """Set ``values`` on the row while its status is one of ``expect`` (compare-and-set under the row lock:
        an attempt that overlapped this one, its lease lapsed, may have moved the row on already)."""
        with session_scope(self.ctx.sessions) as s:
            row = s.get(HardwareSubmission, row_id, with_for_update=True)
            assert row is not None
            if row.status in expect:
                for name, value in values.items():
                    setattr(row, name, value)
                row.polled_at = utcnow()
            s.commit()

    # --- the provider -------------------------------------------------------------------------------------
    def _provider_submit(
        self,
        row_id: int,
        key: str,
        z: np.ndarray,
        angles: np.ndarray,
        shots: int,
        mode: MemoryMode,
        seed: int | None,
        memory_angles: np.ndarray | None,
    ) -> SubmittedJob:
        """Submit under ``key`` (retrying transient errors) and record the provider's job ids."""
        attempt = 0
        while True:
            try:
                submitted = self.inner.submit(
                    z, angles, shots=shots, mode=mode, seed=seed, idempotency_key=key,
                    memory_angles=memory_angles, session_id=self.session_id,
                )  # fmt: skip
                break
            except ProviderError as exc:
                if self.session_id is not None and not exc.retryable:
                    self.session_id = None  # the session ended (closed, expired): submit in a new one
                    continue
                attempt = self._retry_or_raise(row_id, key, exc, attempt)
        shown = [redact(job_id) for job_id in submitted.job_ids]  # Braket task ARNs name the AWS account
        if submitted.session_id is not None:
            self.session_id = submitted.session_id
        self._update(
            row_id,
            (PENDING,),
            status=WAITING,
            provider_job_id=shown[0] if shown else None,
            tags=shown,
            session_id=submitted.session_id,
            payload={"key": key, "submitted": _stored(submitted)},
        )
        self.counts.submitted += 1
        return submitted

    def _wait(self, row_id: int, key: str, submitted: SubmittedJob) -> LayerResult:
        """Look at the provider job until it is done and fetch it; cancel it when the job is cancelled."""
        delay, attempt, seen = FIRST_LOOK_S, 0, "submitted"
        while True:
            try:
                self.ctx.check()
            except JobCancelled:
                self._cancel(row_id, submitted)
                raise
            try:
                state = self.inner.poll(submitted)
                if state != seen:  # queued / running, as the API shows it
                    self._update(row_id, provider_state=state)
                    seen = state
                if state == "done":
                    return self.inner.fetch(submitted)
                if state in ("failed", "cancelled"):
                    raise ProviderError(self._ended(key, submitted, state), retryable=False)
            except ProviderError as exc:
                attempt = self._retry_or_raise(row_id, key, exc, attempt)
                continue
            self.sleep(delay)
            delay = min(2 * delay, self.ctx.settings.hardware_poll_interval_s)

    def _ended(self, key: str, submitted: SubmittedJob, state: str) -> str:
        """Why submission ``key`` ended ``state``: the provider's reason, which fetching raises, else the state."""
        try:
            self.inner.fetch(submitted)
        except ProviderError as exc:
            return f"provider error on submission {key}: {exc}"
        return f"provider job of submission {key} ended {state}"

    def _retry_or_raise(self, row_id: int, key: str, exc: ProviderError, attempt: int) -> int:
        """Wait and return the next attempt number for a transient error; mark the row failed and re-raise a
        final one (or the last allowed retry's)."""
        settings = self.ctx.settings
        message = redact(str(exc))
        if not exc.retryable or attempt >= settings.provider_max_retries:
            self._update(row_id, status="failed", last_error=message)
            raise exc
        attempt += 1
        self._update(row_id, attempts=attempt, last_error=message)
        with session_scope(self.ctx.sessions) as s:
            ev = add_event(s, self.ctx.job_id, "provider", {"submission": key, "retry": attempt, "error": message})
            commit_and_publish(s, settings.pubsub_url, [ev])
        self.sleep(backoff(settings, attempt))
        return attempt

    def _cancel(self, row_id: int, submitted: SubmittedJob) -> None:
        with contextlib.suppress(ProviderError):  # a provider job that cannot be cancelled has ended
            self.inner.cancel(submitted)
        self._update(row_id, status="cancelled")

    def _done(self, row_id: int, result: LayerResult) -> None:
        """Record a fetched result on its row and, the first time only, add its spend to the job's."""
        with session_scope(self.ctx.sessions) as s:
            row = s.get(HardwareSubmission, row_id, with_for_update=True)
            assert row is not None
            if row.status != "done":
                job = s.get(Job, self.ctx.job_id, with_for_update=True)
                assert job is not None
                row.status, row.provider_state = "done", "done"
                row.shots, row.usage_seconds = result.shots, result.qpu_seconds
                job.shots += result.shots
                job.cost_usd += row.cost_usd or 0.0
                job.qpu_seconds += result.qpu_seconds or 0.0
            row.polled_at = utcnow()
            s.commit()


def reserve_training(ctx: JobContext, shots: int, cost_usd: float | None) -> None:
    """Check the owner's daily spend limits for the training job's estimated ``shots`` and ``cost_usd`` (what
    is left of the whole job) and reserve them (:func:`workers.spend.reserve_spend`; raises
    ``SpendLimitExceeded`` before any submission)."""
    from workers.spend import reserve_spend

    with session_scope(ctx.sessions) as s:
        job = s.get(Job, ctx.job_id, with_for_update=True)
        assert job is not None
        reserve_spend(s, ctx.settings, job, shots, cost_usd)
        s.commit()


def provider_submissions(ctx: JobContext) -> int:
    """Provider submissions recorded for the job (all attempts)."""
    with session_scope(ctx.sessions) as s:
        count = s.scalar(select(func.count()).where(HardwareSubmission.job_id == ctx.job_id))
        return int(count or 0)
