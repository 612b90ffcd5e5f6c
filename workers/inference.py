"""Runs an inference job: a stored model on inline images or a dataset slice → predictions, spike trains.

On ``exact`` the network runs in-process; on the other simulators (``aer``, ``ibm-local:``,
``braket-local:``) every layer runs as circuits through ``backends.execute.run_network`` and each layer's
provider job is recorded as a hardware submission. Remote QPUs go through ``workers.hardware`` instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from workers.artifacts import verified
from workers.context import JobContext
from workers.db import session_scope
from workers.models import HardwareSubmission, Model
from workers.specs import DatasetSlice, EncoderSpec, InferJobSpec
from workers.spikes import pack

CHUNK = 256  # samples per forward pass and per streamed "spikes" event


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

    budget = Budget(**spec.budget.model_dump()) if spec.budget else Budget()
    return RunPolicy(fallback=spec.fallback, budget=budget)


def _record_layers(ctx: JobContext, run: Any, step0: int) -> None:
    """Store each layer's provider job as a hardware submission; add shots to the job."""
    with session_scope(ctx.sessions) as s:
        for i, layer in enumerate(run.layers):
            s.add(
                HardwareSubmission(
                    job_id=ctx.job_id,
                    step=step0 + i,
                    provider=layer.backend.split(":", 1)[0],
                    backend=layer.backend,
                    provider_job_id=layer.job_ids[0] if layer.job_ids else None,
                    idempotency_token=f"{ctx.job_id}/{step0 + i}",
                    tags=list(layer.job_ids),
                    status="done",
                    provider_state="done",
                    shots=layer.shots,
                    calibration=layer.calibration,
                )
            )
        s.commit()


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


def run_inference(ctx: JobContext) -> None:
    """Predict chunk by chunk, streaming the output layer's spikes as each chunk comes back."""
    from sqsnn.encoders import encode

    p = prepare(ctx)
    spec, net = p.spec, p.net
    gen = torch.Generator().manual_seed(spec.seed)
    preds: list[int] = []
    layers: list[list[str]] = [[] for _ in net.config.sizes[1:]]
    used, fallback, shots = spec.backend, None, 0
    ctx.substate("executing", backend=spec.backend, samples=int(p.x.shape[0]))
    with torch.no_grad():
        for start in range(0, p.x.shape[0], CHUNK):
            ctx.check()
            xb = encode(p.x[start : start + CHUNK], p.kind, p.encoder.T, p.encoder.p_max, gen)
            if spec.backend == "exact":
                out = net(xb, gen)
                spikes, batch_preds = out.spikes, net.predict(out)
            else:
                from backends.execute import run_network

                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
                run = run_network(net, xb, spec.backend, policy=run_policy(spec), seed=seed)
                _record_layers(ctx, run, step0=len(net.config.sizes[1:]) * (start // CHUNK))
                spikes, batch_preds, used = run.spikes, run.predictions, run.backend
                shots += sum(layer.shots for layer in run.layers)
                fallback = dataclasses.asdict(run.fallback) if run.fallback else None
            p_list = [int(v) for v in batch_preds.tolist()]
            preds.extend(p_list)
            packed = [pack(s) for s in spikes]
            for acc, pk in zip(layers, packed, strict=True):
                acc.extend(pk)
            ctx.emit(
                "spikes",
                {"start": start, "layer": len(layers) - 1, "predictions": p_list, "packed": packed[-1]},
                progress=min(1.0, (start + CHUNK) / p.x.shape[0]),
                backend_used=used,
                shots=shots,
            )
    result = result_payload(p, preds, layers)
    result["backend"] = used
    if fallback is not None:
        result["fallback"] = fallback
    ctx.finish("succeeded", result=result, backend_used=used, shots=shots)
