"""A loopback QPU provider for the service tests, plugged in through ``SQSNN_QPU_BACKENDS``
(``loopback=tests.service.qpu_provider:LoopbackProvider``).

It behaves as a remote provider does, with its state in Redis so every worker process sees the same jobs:
``submit`` de-duplicates on the idempotency key (as IBM job tags and Braket client tokens do) and counts
every job it really accepts; a job is ``queued`` for the first N polls of ``loopback:qN`` (reporting its
queue position), ``running`` for one, then ``done``; ``cancel`` and ``close_session`` are recorded.
Spikes come from the exact engine with the submission's seed. Faults are armed per key and point by the
test (``arm``): ``kill`` SIGKILLs the calling worker process at that point, ``transient`` / ``final``
raise a retryable / final ``ProviderError``; each fires once.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import redis

from backends.base import Availability, Capabilities, LayerResult, ProviderError, ProviderState, QueueInfo, SubmittedJob
from backends.common import BaseBackend, LayerRequest
from backends.exact import ExactBackend

PREFIX = "loopback"
POINTS = ("submit", "accepted", "poll", "fetched")  # before accepting, after accepting, polling, after fetching


def store(url: str | None = None) -> redis.Redis:
    """The Redis database at ``url``; by default ``LOOPBACK_REDIS_URL`` (the provider's own, for tests that
    restart sqsnn's Redis), else the one the workers use (their pub/sub or broker)."""
    env = os.environ
    return redis.Redis.from_url(
        url or env.get("LOOPBACK_REDIS_URL") or env.get("SQSNN_REDIS_URL") or env["SQSNN_BROKER_URL"]
    )


def arm(r: redis.Redis, key: str, point: str, action: str) -> None:
    """Make the provider ``action`` (kill / transient / final) once at ``point`` of submission ``key``."""
    assert point in POINTS and action in ("kill", "transient", "final")
    r.set(f"{PREFIX}:fault:{key}:{point}", action)


def accepted(r: redis.Redis, key: str) -> int:
    """How many provider jobs were really created for ``key`` (1 when de-duplication held)."""
    return int(r.get(f"{PREFIX}:count:{key}") or 0)


def cancelled(r: redis.Redis) -> set[str]:
    """Provider job ids cancelled by the service."""
    return {v.decode() for v in r.smembers(f"{PREFIX}:cancelled")}


def sessions(r: redis.Redis) -> tuple[set[str], set[str]]:
    """(open, closed) provider session ids."""
    return (
        {v.decode() for v in r.smembers(f"{PREFIX}:sessions:open")},
        {v.decode() for v in r.smembers(f"{PREFIX}:sessions:closed")},
    )


class LoopbackProvider(BaseBackend):
    """``loopback:qN``: a remote-like provider (jobs queued for N polls) backed by Redis; ``loopback:offline``
    reports itself unavailable (for the fallback policy)."""

    QPU_SECONDS = 0.25  # billed per job

    def __init__(self, target: str, options: dict[str, Any] | None = None) -> None:
        if target != "offline" and not (target.startswith("q") and target[1:].isdigit()):
            raise ValueError(f"loopback target must be q<polls queued> or offline, got {target!r}")
        if options:
            raise ValueError(f"loopback takes no options, got {sorted(options)}")
        self.name = f"{PREFIX}:{target}"
        self.online = target != "offline"
        self.queued_polls = int(target[1:]) if self.online else 0
        self.r = store()
        self.engine = ExactBackend()

    def neurons_per_circuit(self) -> int:
        return 64

    def cost_usd(self, tasks: int, shots: int) -> tuple[float | None, str]:
        return 0.01 * tasks + 0.001 * shots, "loopback prices: $0.01 per task, $0.001 per shot"

    def capabilities(self) -> Capabilities:
        return Capabilities(
            provider=PREFIX, mid_circuit_measurement=True, reset=True, readable_mid_circuit=True, hardware=True,
            noisy=False, parameter_batches=True, modes=("quantum", "memoryless"),
        )  # fmt: skip

    def availability(self) -> Availability:
        return Availability(self.online, "loopback provider" if self.online else "loopback provider offline")

    def _fault(self, key: str, point: str) -> None:
        action = self.r.getdel(f"{PREFIX}:fault:{key}:{point}")
        if action == b"kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action in (b"transient", b"final"):
            retryable = action == b"transient"
            raise ProviderError(f"loopback {action.decode()} error at {point}", retryable=retryable)

    def _submit(self, request: LayerRequest) -> SubmittedJob:
        key = request.idempotency_key or uuid.uuid4().hex
        self._fault(key, "submit")
        existing = self.r.get(f"{PREFIX}:sub:{key}")
        if existing is not None:  # the provider already holds a job for this key: return it
            fields = json.loads(existing)
            return SubmittedJob(**{**fields, "chunks": [tuple(c) for c in fields["chunks"]]})
        session_id = request.session_id
        if session_id is None:
            session_id = f"lbsess-{uuid.uuid4().hex[:12]}"
            self.r.sadd(f"{PREFIX}:sessions:open", session_id)
        elif not self.r.sismember(f"{PREFIX}:sessions:open", session_id):
            raise ProviderError(f"loopback session {session_id} is closed", retryable=False)
        run = self.engine.submit(
            request.z, request.angles, shots=request.shots, mode=request.mode, seed=request.seed
        )  # fmt: skip
        spikes = self.engine.fetch(run).spikes.astype(np.uint8)
        job = self._submitted(
            request, job_ids=[f"lbjob-{uuid.uuid4().hex[:16]}"], chunks=[(0, request.neurons)], layout="loopback",
            qubits_per_circuit=2 * request.neurons,
        )  # fmt: skip
        job.session_id = session_id
        job_id = job.job_ids[0]
        blob = {"shape": list(spikes.shape), "bits": base64.b64encode(np.packbits(spikes).tobytes()).decode()}
        pipe = self.r.pipeline()
        pipe.set(f"{PREFIX}:result:{job_id}", json.dumps(blob))
        pipe.set(f"{PREFIX}:sub:{key}", json.dumps(asdict(job)))
        pipe.set(f"{PREFIX}:key:{job_id}", key)
        pipe.incr(f"{PREFIX}:count:{key}")
        pipe.incr(f"{PREFIX}:submissions")
        pipe.execute()
        self._fault(key, "accepted")
        return job

    def _key(self, job: SubmittedJob) -> str:
        return str(self.r.get(f"{PREFIX}:key:{job.job_ids[0]}") or b"", "utf-8")

    def poll(self, job: SubmittedJob) -> ProviderState:
        job_id = job.job_ids[0]
        self._fault(self._key(job), "poll")
        if self.r.sismember(f"{PREFIX}:cancelled", job_id):
            return "cancelled"
        polls = int(self.r.incr(f"{PREFIX}:polls:{job_id}"))
        if polls <= self.queued_polls:
            return "queued"
        return "running" if polls == self.queued_polls + 1 else "done"

    def queue_info(self, job: SubmittedJob) -> QueueInfo | None:
        polls = int(self.r.get(f"{PREFIX}:polls:{job.job_ids[0]}") or 0)
        position = max(0, self.queued_polls - polls)
        start = (datetime.now(UTC) + timedelta(seconds=position)).isoformat()
        return QueueInfo(position=position, estimated_start=start, message="loopback queue")

    def fetch(self, job: SubmittedJob) -> LayerResult:
        job_id = job.job_ids[0]
        blob = json.loads(self.r.get(f"{PREFIX}:result:{job_id}") or b"null")
        if blob is None:
            raise ProviderError(f"loopback job {job_id} has no result", retryable=False)
        shape = tuple(blob["shape"])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(blob["bits"]), dtype=np.uint8))[: int(np.prod(shape))]
        self.r.incr(f"{PREFIX}:fetches:{job_id}")
        self._fault(self._key(job), "fetched")
        return LayerResult(
            spikes=bits.reshape(shape).astype(np.float64), backend=self.name, job_ids=job.job_ids, circuits=1,
            jobs=1, shots=job.batch * job.shots, qubits_per_circuit=job.qubits_per_circuit,
            qpu_seconds=self.QPU_SECONDS,
        )  # fmt: skip

    def cancel(self, job: SubmittedJob) -> None:
        for job_id in job.job_ids:
            self.r.sadd(f"{PREFIX}:cancelled", job_id)

    def close_session(self, session_id: str) -> None:
        self.r.smove(f"{PREFIX}:sessions:open", f"{PREFIX}:sessions:closed", session_id)
