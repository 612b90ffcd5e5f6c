"""The provider calls of one QPU job's layer: submit, poll, fetch and store, then the next layer or the result.

:class:`LayerRun` is built for one transition of one submission row (:mod:`workers.qpu_submissions`); each
method takes the next step of that row inside the caller's transaction, which holds the row and the job,
and says what to do next (:class:`Outcome`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.artifacts import verified
from workers.events import add_event, commit_and_publish, set_state
from workers.inference import Prepared, readout, readout_summary, result_payload
from workers.models import HardwareSubmission, Job, JobEvent, Model
from workers.qpu_backends import IN_PROCESS_KINDS, backend_instance, close_session, redacted
from workers.qpu_submissions import (
    ProviderStopped,
    carry_of,
    new_submission,
    poll_delay,
    provider_key,
    row_of,
    submitted_job,
)
from workers.routing import kind_of
from workers.settings import Settings
from workers.spikes import pack, unpack


@dataclass(frozen=True)
class Outcome:
    """What a transition left: ``next_id`` to advance now, or ``wait_s`` until the next look (None: nothing
    left to do for this submission)."""

    next_id: int | None = None
    wait_s: float | None = None


@lru_cache(maxsize=8)
def _network(path: str, sha256: str) -> Any:
    from sqsnn.network import SQSNetwork

    net, _ = SQSNetwork.load(verified(path, sha256))
    net.eval()
    return net


@dataclass
class LayerRun:
    """What every transition of one job needs: its network, encoded inputs ``x (T, B, D)``, backend and
    step (the layer of the submission)."""

    settings: Settings
    net: Any
    x: torch.Tensor
    carry: dict[str, Any]
    backend: Any
    step: int

    @classmethod
    def of(cls, s: Session, settings: Settings, job: Job, sub: HardwareSubmission) -> LayerRun:
        model = s.get(Model, job.input_model_id) if job.input_model_id else None
        if model is None:
            raise ProviderStopped("failed", "the job's model was deleted", cancel=True)
        net = _network(model.path, model.sha256)
        carry = carry_of(s, sub)
        steps = int(carry["encoder"]["T"])
        x = torch.as_tensor(unpack(carry["x"], steps, net.config.sizes[0]), dtype=torch.float64)
        options = json.dumps(carry.get("options") or {}, sort_keys=True)
        return cls(settings, net, x, carry, backend_instance(settings, sub.backend, options), sub.step)

    def _spikes(self, row: HardwareSubmission) -> torch.Tensor:
        assert row.result is not None
        n = self.net.config.sizes[row.step + 1]
        return torch.as_tensor(unpack(row.result["spikes"], self.x.shape[0], n), dtype=torch.float64)

    def _inputs(self, s: Session, job: Job) -> torch.Tensor:
        return self.x if self.step == 0 else self._spikes(row_of(s, job.id, self.step - 1))

    def _check_budget(self, job: Job) -> None:
        from workers.schemas.requests import InferJobSpec

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
        session_id = row_of(s, job.id, self.step - 1).session_id if self.step > 0 else None
        submitted = self.backend.submit(
            z.numpy(), params, shots=1, mode=self.net.config.mode, seed=derive_seed(self.carry["seed"], self.step),
            idempotency_key=provider_key(job.id, self.step), session_id=session_id,
        )  # fmt: skip
        shown = [redacted(job_id) for job_id in submitted.job_ids]  # Braket task ARNs name the AWS account
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
        submitted = submitted_job(sub)
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
            nxt = new_submission(job.id, self.step + 1, sub.backend, None)
            nxt.cost_usd = self.carry["layer_costs"][self.step + 1]
            s.add(nxt)
            s.commit()
            return Outcome(next_id=nxt.id)
        result = self._result(s, job)
        job.result, job.progress = result, 1.0
        summary = {key: result[key] for key in ("impossible_spikes", "observed_spikes")}
        events = [add_event(s, job.id, "readout", summary), set_state(s, job, "succeeded")]
        session_id = sub.session_id
        commit_and_publish(s, self.settings.pubsub_url, events)
        if session_id:
            close_session(self.backend, session_id)
        return Outcome()

    def _result(self, s: Session, job: Job) -> dict[str, Any]:
        """The job's result from every layer's stored spikes: predictions (ties broken by the ideal
        probabilities along the observed spikes), spikes, and how many observed outcomes the ideal model
        forbade (``impossible_spikes`` of ``observed_spikes``)."""
        from sqsnn.network import NetworkOutput
        from workers.schemas.requests import EncoderSpec, InferJobSpec

        rows = s.scalars(
            select(HardwareSubmission).where(HardwareSubmission.job_id == job.id).order_by(HardwareSubmission.step)
        )
        hidden = [self._spikes(row) for row in rows]
        probs, tally = readout(self.net, self.x, hidden)
        with torch.no_grad():
            preds = [int(v) for v in self.net.predict(NetworkOutput(hidden, probs)).tolist()]
        labels = self.carry.get("labels")
        y = torch.tensor(labels, dtype=torch.int64) if labels is not None else None
        spec = InferJobSpec.model_validate(job.spec)
        done = Prepared(spec, self.net, self.carry["kind"], EncoderSpec(**self.carry["encoder"]), self.x, y)
        result = result_payload(done, preds, [pack(hh) for hh in hidden])
        result["backend"] = self.backend.name
        if self.carry.get("fallback"):
            result["fallback"] = self.carry["fallback"]
        return {**result, **readout_summary(tally)}
