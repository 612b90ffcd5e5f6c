"""Runs an inference job: a stored model on inline images or a dataset slice → predictions, spike trains.

On ``exact`` the network runs in-process; on the other simulators (``aer``, ``ibm-local:``,
``braket-local:``) every layer runs as circuits through ``backends.execute.run_network`` and each layer's
provider job is recorded as a hardware submission. Samples run in chunks sized to the memory limit
(:mod:`workers.bounds`); each finished chunk is stored (``JobChunk``), so a job resumed after a crash
continues from its last finished chunk. Remote QPUs go through ``workers.hardware`` instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
from sqlalchemy import select

from sqsnn.training.observed import ReadoutTally
from workers.artifacts import verified
from workers.context import JobContext, LeaseLost
from workers.db import session_scope
from workers.events import add_event, commit_and_publish
from workers.models import HardwareSubmission, Job, JobChunk, Model
from workers.schemas.requests import DatasetSlice, EncoderSpec, InferJobSpec
from workers.spikes import pack, unpack


class InvalidJob(ValueError):
    """The job cannot run as specified (the message says why); it fails without retries."""


@dataclass
class Prepared:
    """A loaded model and its inputs."""

    spec: InferJobSpec
    net: Any
    kind: Literal["static", "frames"]
    encoder: EncoderSpec
    x: torch.Tensor
    y: torch.Tensor | None


def _inputs(spec: InferJobSpec, kind: str, n_inputs: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, D) or (B, T, D) inputs and optional (B,) labels."""
    from sqsnn.datasets import load_dataset

    src = spec.inputs
    y: torch.Tensor | None
    if isinstance(src, DatasetSlice):
        data = load_dataset(src.name, classes=src.classes)
        x_all, y_all = (data.x_test, data.y_test) if src.split == "test" else (data.x_train, data.y_train)
        if src.stop > x_all.shape[0]:
            raise InvalidJob(f"inputs.stop={src.stop} exceeds the {src.split} split size {x_all.shape[0]}")
        x, y = x_all[src.start : src.stop], y_all[src.start : src.stop]
    else:
        if kind != "static":
            raise InvalidJob("inline images need a model trained on static images; use a dataset slice")
        x = torch.tensor(src.images, dtype=torch.float64)
        y = torch.tensor(src.labels, dtype=torch.int64) if src.labels is not None else None
    if x.shape[-1] != n_inputs:
        raise InvalidJob(f"inputs have {x.shape[-1]} values per sample; the model expects {n_inputs}")
    return x, y


def prepare(ctx: JobContext) -> Prepared:
    """Load the job's model (checksum verified) and inputs."""
    from sqsnn.network import SQSNetwork

    job = ctx.load()
    spec = InferJobSpec.model_validate(job.spec)
    with session_scope(ctx.sessions) as s:
        row = s.get(Model, str(spec.model_id))
        if row is None or row.owner != job.owner:
            raise InvalidJob(f"model {spec.model_id} not found")
        path, sha = row.path, row.sha256
    ctx.substate("loading_model", backend=spec.backend)
    net, meta = SQSNetwork.load(verified(path, sha))
    net.eval()
    encoder = spec.encoder or EncoderSpec(**meta.get("encoder", {}))
    kind: Literal["static", "frames"] = "frames" if meta.get("kind") == "frames" else "static"
    x, y = _inputs(spec, kind, net.config.sizes[0])
    return Prepared(spec, net, kind, encoder, x, y)


def run_policy(spec: InferJobSpec) -> Any:
    """The backends' RunPolicy (fallback and budget) of a job."""
    from backends.options import Budget, RunPolicy

    budget = spec.budget or Budget()
    return RunPolicy(fallback=spec.fallback, budget=budget)


def _layer_rows(job_id: str, run: Any, step0: int) -> list[HardwareSubmission]:
    """One hardware submission row per layer of a finished ``run_network`` (provider job ids, shots)."""
    return [
        HardwareSubmission(
            job_id=job_id,
            step=step0 + i,
            provider=layer.backend.split(":", 1)[0],
            backend=layer.backend,
            provider_job_id=layer.job_ids[0] if layer.job_ids else None,
            idempotency_token=f"{job_id}/{step0 + i}",
            tags=list(layer.job_ids),
            status="done",
            provider_state="done",
            shots=layer.shots,
            usage_seconds=layer.qpu_seconds,
            calibration=layer.calibration,
        )
        for i, layer in enumerate(run.layers)
    ]


def result_payload(p: Prepared, preds: list[int], layers: list[list[str]]) -> dict[str, Any]:
    """The stored result: predictions, optional labels/accuracy and every layer's packed spike trains."""
    result: dict[str, Any] = {
        "model_id": str(p.spec.model_id),
        "predictions": preds,
        "spikes": {
            "encoding": "packbits-msb-base64; bit t*n+j is neuron j at step t",
            "T": p.encoder.T,
            "layers": [
                {"neurons": n, "samples": samples} for n, samples in zip(p.net.config.sizes[1:], layers, strict=True)
            ],
        },
    }
    if p.y is not None:
        result["labels"] = [int(v) for v in p.y.tolist()]
        result["accuracy"] = float((torch.tensor(preds) == p.y).double().mean())
    return result


@dataclass
class ChunkOutput:
    """What one chunk produced: predictions, every layer's packed spikes, and how they were produced."""

    predictions: list[int]
    packed: list[list[str]]
    shots: int
    backend: str
    fallback: dict[str, Any] | None
    rows: list[HardwareSubmission]


def _encoded_chunk(p: Prepared, index: int, start: int, stop: int) -> tuple[torch.Tensor, torch.Generator]:
    """Samples ``start:stop`` encoded ``(T, B, D)`` with the generator derived from (seed, chunk index), and
    that generator (it goes on to seed the chunk's run): the same chunk always gets the same inputs."""
    from backends.common import derive_seed
    from sqsnn.encoders import encode

    gen = torch.Generator().manual_seed(derive_seed(p.spec.seed, index) or 0)
    return encode(p.x[start:stop], p.kind, p.encoder.T, p.encoder.p_max, gen), gen


def readout(net: Any, x: torch.Tensor, spikes: list[torch.Tensor]) -> tuple[list[torch.Tensor], ReadoutTally]:
    """Replay observed spikes through the ideal model: every layer's ``p(s_t = 1 | observed past)`` ``(T, B,
    n_l)`` for inputs ``x (T, B, D)`` and observed ``spikes`` (one ``(T, B, n_l)`` tensor per layer), and the
    tally of observed outcomes whose ideal probability was below ``IMPOSSIBLE_P`` = 1e-12 (device errors;
    the replay follows the opposite outcome there, see :mod:`sqsnn.training.observed`)."""
    from sqsnn.training.observed import follow_observed

    tally, probs, h = ReadoutTally(), [], x.to(torch.float64)
    with torch.no_grad():
        for layer, s in zip(net.layers, spikes, strict=True):
            z = layer.currents(h, x.to(torch.float64) if layer.direct_weight is not None else None)
            path = follow_observed(z, layer.params(), net.config.mode, s)
            probs.append(path.probs)
            tally.add(path.impossible, s.numel())
            h = s
    return probs, tally


def readout_summary(tally: ReadoutTally) -> dict[str, int]:
    """The result fields (and ``readout`` event) of a tally: impossible and observed outcomes."""
    return {"impossible_spikes": tally.impossible, "observed_spikes": tally.observed}


def _run_chunk(ctx: JobContext, p: Prepared, index: int, start: int, stop: int) -> ChunkOutput:
    """Encode and run samples ``start:stop`` with generators derived from (seed, chunk index), so a
    resumed job computes every chunk exactly as an uninterrupted one."""
    spec, net = p.spec, p.net
    with torch.no_grad():
        xb, gen = _encoded_chunk(p, index, start, stop)
        if spec.backend == "exact":
            out = net(xb, gen)
            preds = [int(v) for v in net.predict(out).tolist()]
            return ChunkOutput(preds, [pack(s) for s in out.spikes], 0, "exact", None, [])
        from backends.execute import run_network

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        run = run_network(net, xb, spec.backend, options=spec.options, policy=run_policy(spec), seed=seed)
    rows = _layer_rows(ctx.job_id, run, step0=len(net.layers) * index)
    fallback = dataclasses.asdict(run.fallback) if run.fallback else None
    preds = [int(v) for v in run.predictions.tolist()]
    shots = sum(layer.shots for layer in run.layers)
    return ChunkOutput(preds, [pack(s) for s in run.spikes], shots, run.backend, fallback, rows)


def _store_chunk(ctx: JobContext, index: int, start: int, stop: int, out: ChunkOutput, samples: int) -> None:
    """Store a finished chunk, its provider jobs and its spikes event in one transaction, only while this
    worker holds the job's lease (else LeaseLost: the job runs elsewhere now)."""
    with session_scope(ctx.sessions) as s:
        job = s.get(Job, ctx.job_id, with_for_update=True)
        assert job is not None
        if job.lease_owner != ctx.token:
            raise LeaseLost(f"job {ctx.job_id} is now leased by {job.lease_owner}")
        s.add(
            JobChunk(
                job_id=ctx.job_id, index=index, start=start, stop=stop, predictions=out.predictions,
                spikes=out.packed, shots=out.shots, backend=out.backend, fallback=out.fallback,
            )
        )  # fmt: skip
        s.add_all(out.rows)
        job.shots += out.shots
        job.backend_used = out.backend
        job.progress = min(1.0, stop / samples)
        ev = add_event(
            s,
            ctx.job_id,
            "spikes",
            {"start": start, "layer": len(out.packed) - 1, "predictions": out.predictions, "packed": out.packed[-1]},
        )
        commit_and_publish(s, ctx.settings.pubsub_url, [ev])


def run_inference(ctx: JobContext) -> None:
    """Predict chunk by chunk (sized by :func:`workers.bounds.plan_inference`), storing and streaming each
    chunk as it finishes; a resumed job skips the chunks already stored. (``run_job`` renews the lease
    while this runs.)"""
    from workers.bounds import plan_inference

    p = prepare(ctx)
    samples = int(p.x.shape[0])
    plan = plan_inference(p.net.config.sizes, p.encoder.T, samples, p.spec.backend, ctx.settings)
    with session_scope(ctx.sessions) as s:
        done = set(s.scalars(select(JobChunk.index).where(JobChunk.job_id == ctx.job_id)))
    ctx.substate(
        "executing", backend=p.spec.backend, samples=samples, chunk=plan.chunk, chunks=plan.chunks,
        chunks_done=len(done), estimated_bytes=int(plan.peak_bytes), estimated_seconds=round(plan.seconds, 1),
    )  # fmt: skip
    for index in range(plan.chunks):
        if index in done:
            continue
        ctx.check(force=True)
        start, stop = index * plan.chunk, min(samples, (index + 1) * plan.chunk)
        out = _run_chunk(ctx, p, index, start, stop)
        _store_chunk(ctx, index, start, stop, out, samples)
    with session_scope(ctx.sessions) as s:
        chunks = list(s.scalars(select(JobChunk).where(JobChunk.job_id == ctx.job_id).order_by(JobChunk.index)))
    preds = [v for c in chunks for v in c.predictions]
    layers = [[v for c in chunks for v in c.spikes[i]] for i in range(len(p.net.layers))]
    result = result_payload(p, preds, layers)
    result["backend"] = chunks[-1].backend
    fallback = next((c.fallback for c in chunks if c.fallback), None)
    if fallback is not None:
        result["fallback"] = fallback
    if chunks[-1].backend != "exact":  # a circuit ran: how often did it report what the model forbids?
        summary = readout_summary(_chunks_readout(p, chunks))
        result.update(summary)
        ctx.emit("readout", summary)
    ctx.finish("succeeded", result=result, backend_used=chunks[-1].backend)


def _chunks_readout(p: Prepared, chunks: list[JobChunk]) -> ReadoutTally:
    """The readout tally of every stored chunk, replayed from its stored spikes and re-encoded inputs."""
    total = ReadoutTally()
    sizes = p.net.config.sizes[1:]
    for chunk in chunks:
        x, _ = _encoded_chunk(p, chunk.index, chunk.start, chunk.stop)
        spikes = [
            torch.as_tensor(unpack(packed, p.encoder.T, n), dtype=torch.float64)
            for packed, n in zip(chunk.spikes, sizes, strict=True)
        ]
        _, tally = readout(p.net, x, spikes)
        total.add(tally.impossible, tally.observed)
    return total
