"""Remote-QPU inference (``ibm:<backend>``, ``braket:<arn>``): submit, persist, end; the poller advances.

A QPU queue can hold a job for hours or days, longer than any broker visibility timeout, so no task
waits on one. ``start_hardware`` (a ``run_job`` on the hardware queue) encodes the inputs, submits the
first layer, stores the provider job ids as a ``HardwareSubmission`` row and returns, releasing the job's
lease. The periodic ``poll_hardware`` task calls :func:`poll_open_submissions`: each open submission is
polled once; when it is done its spikes are fetched, streamed, and the next layer's currents (classical:
``W s + b``) are submitted, until the last layer gives the predictions.

Backend objects are cached per process; a provider whose ``poll``/``fetch`` needs the in-process job
handle (local simulators) can only be advanced by the process that submitted it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from functools import lru_cache
from typing import Any

import torch
from sqlalchemy import select

from workers.artifacts import verified
from workers.context import JobContext, sessions_for
from workers.db import session_scope
from workers.events import add_event, commit_and_publish, set_state
from workers.inference import Prepared, prepare, result_payload, run_policy
from workers.models import HardwareSubmission, Job, Model
from workers.settings import Settings
from workers.spikes import pack, unpack

log = logging.getLogger(__name__)
OPEN = ("submitted", "queued", "running")


@lru_cache(maxsize=32)
def backend_instance(name: str) -> Any:
    """One backend object per name and process (keeps provider sessions and job handles)."""
    from backends.registry import get_backend

    return get_backend(name)


def _submit_layer(
    settings: Settings, job_id: str, step: int, backend: Any, net: Any, x: torch.Tensor,
    hidden: list[torch.Tensor], carry: dict[str, Any],
) -> None:  # fmt: skip
    """Submit layer ``step`` (its input is ``hidden[-1]`` or ``x``) and store the submission row."""
    layer = net.layers[step]
    h = hidden[-1] if hidden else x
    with torch.no_grad():
        z = layer.currents(h, x if layer.direct_weight is not None else None)
        params = layer.params()
    token = f"{job_id}/{step}"
    submitted = backend.submit(
        z.numpy(), params, shots=1, mode=net.config.mode, seed=carry["seed"] + step, idempotency_key=token
    )
    with session_scope(sessions_for(settings)) as s:
        job = s.get(Job, job_id)
        assert job is not None
        s.add(
            HardwareSubmission(
                job_id=job_id,
                step=step,
                provider=backend.name.split(":", 1)[0],
                backend=backend.name,
                provider_job_id=submitted.job_ids[0] if submitted.job_ids else None,
                idempotency_token=hashlib.sha256(token.encode()).hexdigest(),
                tags=list(submitted.job_ids),
                status="submitted",
                shots=submitted.batch * submitted.shots * len(submitted.chunks),
                cost_usd=carry["layer_costs"][step],
                calibration=submitted.calibration,
                payload={
                    "submitted": dataclasses.asdict(submitted),
                    "x": pack(x),
                    "hidden": [pack(hh) for hh in hidden],
                    **carry,
                },
            )
        )
        job.lease_owner, job.lease_expires_at = None, None  # the poller owns the job from here
        ev = set_state(s, job, "running", substate="waiting_qpu", layer=step, provider_job_ids=submitted.job_ids)
        commit_and_publish(s, settings.pubsub_url, [ev])


def start_hardware(ctx: JobContext) -> None:
    """Check the budget, encode the inputs and submit the first layer; returns without waiting."""
    from backends.estimate import enforce_budget, estimate_network
    from backends.registry import resolve
    from sqsnn.encoders import encode

    p: Prepared = prepare(ctx)
    gen = torch.Generator().manual_seed(p.spec.seed)
    x = encode(p.x, p.kind, p.encoder.T, p.encoder.p_max, gen).to(torch.float64)
    policy = run_policy(p.spec)
    ctx.substate("compiling", backend=p.spec.backend)
    resolved = resolve(p.spec.backend, None, policy)
    estimate = estimate_network(p.net.config.sizes, x.shape[0], x.shape[1], resolved.backend)
    enforce_budget(estimate, policy.budget)
    backend = backend_instance(resolved.backend.name)
    ctx.emit(
        "estimate",
        {"backend": backend.name, "shots": estimate.shots, "jobs": estimate.jobs, "cost_usd": estimate.cost_usd},
        backend_used=backend.name,
        cost_usd=estimate.cost_usd or 0.0,
    )
    carry = {
        "seed": p.spec.seed,
        "spec": p.spec.model_dump(mode="json"),
        "kind": p.kind,
        "encoder": p.encoder.model_dump(),
        "labels": p.y.tolist() if p.y is not None else None,
        "layer_costs": [layer.cost_usd for layer in estimate.layers],
    }
    _submit_layer(ctx.settings, ctx.job_id, 0, backend, p.net, x, [], carry)


def poll_open_submissions(settings: Settings) -> int:
    """Advance every open submission once; returns how many were looked at."""
    with session_scope(sessions_for(settings)) as s:
        ids = list(s.scalars(select(HardwareSubmission.id).where(HardwareSubmission.status.in_(OPEN))))
    for sub_id in ids:
        try:
            advance(settings, sub_id)
        except Exception as exc:
            log.exception("submission %s", sub_id)
            _fail(settings, sub_id, f"{type(exc).__name__}: {exc}")
    return len(ids)


def _fail(settings: Settings, sub_id: int, reason: str, status: str = "failed", state: str = "failed") -> None:
    with session_scope(sessions_for(settings)) as s:
        sub = s.get(HardwareSubmission, sub_id)
        assert sub is not None
        sub.status = status
        job = s.get(Job, sub.job_id)
        assert job is not None
        if job.state in ("succeeded", "failed", "cancelled"):
            s.commit()
            return
        ev = set_state(s, job, state, reason=reason)
        commit_and_publish(s, settings.pubsub_url, [ev])


def advance(settings: Settings, sub_id: int) -> None:
    """Poll one submission; on completion fetch it and submit the next layer or finish the job."""
    from backends.base import SubmittedJob
    from backends.execute import conditional_probabilities
    from sqsnn.network import NetworkOutput, SQSLayer, SQSNetwork
    from workers.specs import EncoderSpec, InferJobSpec

    with session_scope(sessions_for(settings)) as s:
        sub = s.get(HardwareSubmission, sub_id)
        assert sub is not None
        job = s.get(Job, sub.job_id)
        assert job is not None
        if job.cancel_requested:
            sub.status = "cancelled"
            ev = set_state(s, job, "cancelled", reason="cancelled by its owner while waiting for the QPU")
            commit_and_publish(s, settings.pubsub_url, [ev])
            return
        payload, name, step, job_id = dict(sub.payload or {}), sub.backend, sub.step, sub.job_id
    backend = backend_instance(name)
    fields = payload["submitted"]
    submitted = SubmittedJob(**{**fields, "chunks": [tuple(c) for c in fields["chunks"]]})
    try:
        state = backend.poll(submitted)
    except KeyError as exc:  # a local simulator's job handle lived in another process
        _fail(settings, sub_id, f"submission lost: {exc}")
        return
    with session_scope(sessions_for(settings)) as s:
        sub = s.get(HardwareSubmission, sub_id)
        job = s.get(Job, job_id)
        assert sub is not None and job is not None
        changed = sub.provider_state != state
        sub.provider_state, job.provider_state = state, state
        events = [add_event(s, job_id, "provider", {"layer": step, "state": state})] if changed else []
        if state in ("queued", "running"):
            sub.status = state
            if state == "running" and job.substate != "executing_qpu":
                events.append(set_state(s, job, "running", substate="executing_qpu", layer=step))
        commit_and_publish(s, settings.pubsub_url, events)
    if state in ("queued", "running"):
        return
    if state != "done":
        _fail(settings, sub_id, f"provider job {submitted.job_ids} ended {state}", status=state)
        return

    result = backend.fetch(submitted)
    spikes = torch.as_tensor(result.single_shot, dtype=torch.float64)
    with session_scope(sessions_for(settings)) as s:
        sub = s.get(HardwareSubmission, sub_id)
        job = s.get(Job, job_id)
        assert sub is not None and job is not None
        sub.status = "done"
        sub.shots = result.shots
        usage = getattr(result, "usage", None)
        if isinstance(usage, dict):
            sub.usage_seconds = (usage.get("usage") or {}).get("quantum_seconds")
        job.shots += result.shots
        net_model = job.input_model_id
        ev = add_event(s, job_id, "spikes", {"layer": step, "start": 0, "packed": pack(spikes)})
        commit_and_publish(s, settings.pubsub_url, [ev])

    with session_scope(sessions_for(settings)) as s:
        model = s.get(Model, net_model)
        assert model is not None
        path, sha = model.path, model.sha256
    net, _ = SQSNetwork.load(verified(path, sha))
    steps = submitted.steps
    x = torch.as_tensor(unpack(payload["x"], steps, net.config.sizes[0]), dtype=torch.float64)
    hidden = [
        torch.as_tensor(unpack(h, steps, n), dtype=torch.float64)
        for h, n in zip(payload["hidden"], net.config.sizes[1:], strict=False)
    ]
    hidden.append(spikes)
    if step + 1 < len(net.layers):
        carry = {k: payload[k] for k in ("seed", "spec", "kind", "encoder", "labels", "layer_costs")}
        _submit_layer(settings, job_id, step + 1, backend, net, x, hidden, carry)
        return
    with torch.no_grad():
        probs, h = [], x
        for layer, s_out in zip(net.layers, hidden, strict=True):
            assert isinstance(layer, SQSLayer)
            z = layer.currents(h, x if layer.direct_weight is not None else None)
            probs.append(conditional_probabilities(z, layer.params(), net.config.mode, s_out))
            h = s_out
        preds = [int(v) for v in net.predict(NetworkOutput(hidden, probs)).tolist()]
    spec = InferJobSpec.model_validate(payload["spec"])
    labels = payload.get("labels")
    y = torch.tensor(labels, dtype=torch.int64) if labels is not None else None
    done = Prepared(spec, net, payload["kind"], EncoderSpec(**payload["encoder"]), x, y)
    result = result_payload(done, preds, [pack(hh) for hh in hidden])
    result["backend"] = name
    JobContext(settings, job_id, token="poller").finish("succeeded", result=result)
