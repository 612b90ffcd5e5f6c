"""Runs an inference job: a stored model on inline images or a dataset slice → predictions, spike trains."""

from __future__ import annotations

from typing import Any

import torch

from workers.artifacts import verified
from workers.context import JobContext
from workers.db import session_scope
from workers.models import Model
from workers.specs import DatasetSlice, EncoderSpec, InferJobSpec
from workers.spikes import pack

CHUNK = 256  # samples per forward pass and per streamed "spikes" event


class InvalidJob(ValueError):
    """The job cannot run as specified (the message says why); it fails without retries."""


def _inputs(spec: InferJobSpec, kind: str, n_inputs: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, D) or (B, T, D) inputs and optional (B,) labels."""
    from sqsnn.datasets import load_dataset

    src = spec.inputs
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


def run_inference(ctx: JobContext) -> None:
    """Predict with the exact simulator, streaming the output layer's spikes chunk by chunk."""
    from sqsnn.encoders import encode
    from sqsnn.network import SQSNetwork

    job = ctx.load()
    spec = InferJobSpec.model_validate(job.spec)
    with session_scope(ctx.sessions) as s:
        row = s.get(Model, str(spec.model_id))
        if row is None or row.owner != job.owner:
            raise InvalidJob(f"model {spec.model_id} not found")
        path, sha = row.path, row.sha256
    ctx.substate("loading_model", backend="exact")
    net, meta = SQSNetwork.load(verified(path, sha))
    net.eval()
    encoder = spec.encoder or EncoderSpec(**meta.get("encoder", {}))
    kind = str(meta.get("kind", "static"))
    x, y = _inputs(spec, kind, net.config.sizes[0])
    gen = torch.Generator().manual_seed(spec.seed)
    preds: list[int] = []
    layers: list[list[str]] = [[] for _ in net.config.sizes[1:]]
    ctx.substate("executing", backend="exact", samples=int(x.shape[0]))
    with torch.no_grad():
        for start in range(0, x.shape[0], CHUNK):
            ctx.check()
            xb = encode(x[start : start + CHUNK], kind, encoder.T, encoder.p_max, gen)
            out = net(xb, gen)
            p = net.predict(out).tolist()
            preds.extend(int(v) for v in p)
            packed = [pack(s) for s in out.spikes]
            for acc, pk in zip(layers, packed, strict=True):
                acc.extend(pk)
            ctx.emit(
                "spikes",
                {"start": start, "layer": len(layers) - 1, "predictions": p, "packed": packed[-1]},
                progress=min(1.0, (start + CHUNK) / x.shape[0]),
            )
    result: dict[str, Any] = {
        "model_id": str(spec.model_id),
        "predictions": preds,
        "spikes": {
            "encoding": "packbits-msb-base64; bit t*n+j is neuron j at step t",
            "T": encoder.T,
            "layers": [
                {"neurons": n, "samples": samples} for n, samples in zip(net.config.sizes[1:], layers, strict=True)
            ],
        },
    }
    if y is not None:
        result["labels"] = [int(v) for v in y.tolist()]
        result["accuracy"] = float((torch.tensor(preds) == y).double().mean())
    ctx.finish("succeeded", result=result, backend_used="exact")
