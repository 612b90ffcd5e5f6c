"""Runs a training job: dataset → SQSNetwork → trainer, checkpointing every epoch, resuming from the last."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from typing import Any

import torch

from workers.artifacts import ArtifactCorrupted, checkpoint_path, finalize, model_path, verified
from workers.context import JobContext, LeaseLost
from workers.db import session_scope
from workers.models import Checkpoint as CheckpointRow
from workers.models import EpochMetric, Job, Model, new_id
from workers.specs import TrainJobSpec

log = logging.getLogger(__name__)


def _metrics_dict(m: Any) -> dict[str, Any]:
    """An ``EpochMetrics`` dataclass as a JSON-ready dict."""
    return dataclasses.asdict(m)


def _load_resume(ctx: JobContext) -> Any | None:
    """The newest intact checkpoint of this job as a ``sqsnn.training.bptt.Checkpoint``, or None."""
    from sqsnn.training.bptt import Checkpoint, EpochMetrics

    with session_scope(ctx.sessions) as s:
        rows = (
            s.query(CheckpointRow).filter(CheckpointRow.job_id == ctx.job_id).order_by(CheckpointRow.epoch.desc()).all()
        )
        candidates = [(r.path, r.sha256) for r in rows]
    for path, sha in candidates:
        try:
            blob = torch.load(verified(path, sha), map_location="cpu", weights_only=True)
        except ArtifactCorrupted as exc:
            log.warning("skipping checkpoint: %s", exc)
            continue
        return Checkpoint(
            epoch=blob["epoch"],
            model_state=blob["model_state"],
            optimizer_state=blob["optimizer_state"],
            generator_state=blob["generator_state"],
            metrics=[EpochMetrics(**m) for m in blob["metrics"]],
        )
    return None


def _store_epoch(ctx: JobContext, spec: TrainJobSpec, metrics: Any, ckpt: Any) -> None:
    """Write the checkpoint file, then its row, the epoch's metrics and an event in one transaction."""
    path = checkpoint_path(ctx.settings.artifacts_dir, ctx.job_id, ckpt.epoch)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "epoch": ckpt.epoch,
            "model_state": ckpt.model_state,
            "optimizer_state": ckpt.optimizer_state,
            "generator_state": ckpt.generator_state,
            "metrics": [_metrics_dict(m) for m in ckpt.metrics],
        },
        tmp,
    )
    sha, size = finalize(tmp, path)
    ctx.check(force=True)
    with session_scope(ctx.sessions) as s:
        s.query(CheckpointRow).filter_by(job_id=ctx.job_id, epoch=ckpt.epoch).delete()
        s.query(EpochMetric).filter_by(job_id=ctx.job_id, epoch=metrics.epoch).delete()
        s.add(CheckpointRow(job_id=ctx.job_id, epoch=ckpt.epoch, path=str(path), sha256=sha, size_bytes=size))
        s.add(
            EpochMetric(
                job_id=ctx.job_id,
                epoch=metrics.epoch,
                train_loss=metrics.train_loss,
                train_accuracy=metrics.train_accuracy,
                test_accuracy=metrics.test_accuracy,
                spike_rates=list(metrics.spike_rates),
                seconds=metrics.seconds,
            )
        )
        s.commit()
    ctx.emit(
        "epoch",
        {**_metrics_dict(metrics), "epochs": spec.training.epochs, "checkpoint_sha256": sha},
        progress=metrics.epoch / spec.training.epochs,
    )


def _trainer(spec: TrainJobSpec) -> tuple[Callable[..., Any], Any]:
    """``train(model, data, **callbacks)`` for the job's method with its configuration bound, and that
    configuration (``TrainConfig`` or ``LocalConfig``; fields the job leaves unset keep the trainer's
    defaults)."""
    from sqsnn.training.bptt import TrainConfig, train
    from sqsnn.training.local import LocalConfig, train_local

    t = spec.training
    given: dict[str, Any] = {"batch_size": t.batch_size, "lr": t.lr, "logit_scale": t.logit_scale}
    given |= {"samples": t.samples, "shots": t.shots, "directions": t.directions, "spsa_step": t.spsa_step}
    options = {k: v for k, v in given.items() if v is not None}
    options |= {"epochs": t.epochs, "seed": spec.seed, "T": spec.encoder.T, "p_max": spec.encoder.p_max}
    if t.method == "bptt":
        config: Any = TrainConfig(loss=t.loss, **options)
        return functools.partial(train, config=config), config
    estimator = t.estimator or "exact"
    if estimator == "official":
        config = LocalConfig.reference(**options)
    else:
        config = LocalConfig(estimator=estimator, **options)
    return functools.partial(train_local, config=config), config


def run_training(ctx: JobContext) -> None:
    """Train the job's network with the exact simulator; store checkpoints, metrics and the model."""
    from sqsnn.datasets import load_dataset
    from sqsnn.network import NetworkConfig, SQSNetwork
    from sqsnn.training.bptt import TrainingStopped

    job = ctx.load()
    spec = TrainJobSpec.model_validate(job.spec)
    ctx.substate("loading_data")
    data = load_dataset(
        spec.dataset.name,
        classes=spec.dataset.classes,
        limit_train=spec.dataset.limit_train,
        limit_test=spec.dataset.limit_test,
        val_fraction=0.0,  # jobs keep evaluating the test split every epoch (no validation split)
    )
    n_inputs = int(data.x_train.shape[-1])
    config = NetworkConfig(
        sizes=[n_inputs, *spec.model.hidden, data.n_classes],
        mode=spec.model.mode,
        bias=spec.model.bias,
        direct=spec.model.direct,
        surrogate=spec.model.surrogate,
        seed=spec.seed,
    )
    model = SQSNetwork(config)
    trainer, trainer_config = _trainer(spec)
    resume = _load_resume(ctx)
    ctx.substate(
        "learning",
        method=spec.training.method,
        resumed_from_epoch=resume.epoch if resume is not None else 0,
        parameters=model.num_parameters(),
    )
    with session_scope(ctx.sessions) as s:
        row = s.get(Job, ctx.job_id)
        assert row is not None
        row.backend_used = "exact"
        s.commit()

    def on_batch(epoch: int, batch_index: int, loss: float) -> None:
        ctx.progress({"epoch": epoch, "batch": batch_index, "loss": float(loss)})

    try:
        result = trainer(
            model,
            data,
            resume=resume,
            on_epoch=lambda m, c: _store_epoch(ctx, spec, m, c),
            on_batch=on_batch,
            should_stop=ctx.should_stop,
        )
    except TrainingStopped:
        ctx.check(force=True)  # raises JobCancelled or LeaseLost with the reason
        raise LeaseLost("training stopped without a cancellation") from None

    model_id = new_id()
    path = model_path(ctx.settings.artifacts_dir, model_id)
    tmp = path.with_suffix(".tmp")
    meta = {
        "job_id": ctx.job_id,
        "dataset": spec.dataset.model_dump(),
        "encoder": spec.encoder.model_dump(),
        "training": spec.training.model_dump(),
        "trainer_config": dataclasses.asdict(trainer_config),
        "kind": data.kind,
        "n_classes": data.n_classes,
        "test_accuracy": result.test_accuracy,
    }
    model.save(tmp, **meta)
    sha, size = finalize(tmp, path)
    summary = {
        "test_accuracy": result.test_accuracy,
        "spike_rates": list(result.spike_rates),
        "epochs": [_metrics_dict(m) for m in result.metrics],
    }
    with session_scope(ctx.sessions) as s:
        s.add(
            Model(
                id=model_id,
                owner=job.owner,
                job_id=ctx.job_id,
                name=spec.name,
                config={"network": dataclasses.asdict(config), **meta},
                metrics=summary,
                test_accuracy=result.test_accuracy,
                path=str(path),
                sha256=sha,
                size_bytes=size,
            )
        )
        s.commit()
    ctx.finish(
        "succeeded",
        result={
            "model_id": model_id,
            "test_accuracy": result.test_accuracy,
            "spike_rates": list(result.spike_rates),
        },
    )
