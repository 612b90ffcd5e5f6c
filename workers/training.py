"""Runs a training job: dataset → SQSNetwork → trainer, checkpointing every epoch, resuming from the last.

On ``exact`` the trainers run in-process. On any other backend the job trains with the local rule in the loop
with that backend (``backends.training``): forward spikes and the estimator's probabilities are measured
there, every submission is priced and charged against the job's budget first, and each epoch's shots,
submissions, tasks, estimated cost and impossible readouts are stored with its event and in the result;
after training, the test accuracy is measured on the backend too (``backend_test_accuracy``, also charged to
the budget). When the budget runs out during training, the job stops before the submission that would exceed
it, keeping its checkpoints, and fails with the reason. :func:`estimate_training_job` prices a job before it
is submitted.

On a remote QPU (``ibm:``, ``braket:``) every provider submission goes through
:class:`workers.qpu_training.RecordedBackend`: recorded before it is waited on and adopted (not submitted
again) by the attempt that resumes the job after a crash; the job's shots, cost and billed QPU seconds are
the sums over those records, and the owner's daily spend limits are checked (and the rest of the job
reserved) before the first submission. A final provider error ends the job with the provider's reason and
the newest checkpoint named.
"""

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
from workers.models import EpochMetric, Job, Model, StoredCheckpoint, new_id
from workers.schemas.requests import TrainJobSpec

log = logging.getLogger(__name__)

EVAL_SEED_KEY = 1 << 20  # derive_seed key of the final evaluation on the backend (training streams use 0, 1)


def _metrics_dict(m: Any) -> dict[str, Any]:
    """An ``EpochMetrics`` dataclass as a JSON-ready dict."""
    return dataclasses.asdict(m)


def _load_resume(ctx: JobContext) -> tuple[Any | None, list[dict[str, Any]]]:
    """The newest intact checkpoint of this job as a ``sqsnn.training.bptt.Checkpoint`` (or None) and the
    per-epoch backend usage stored with it."""
    from sqsnn.training.bptt import Checkpoint, EpochMetrics

    with session_scope(ctx.sessions) as s:
        rows = (
            s.query(StoredCheckpoint)
            .filter(StoredCheckpoint.job_id == ctx.job_id)
            .order_by(StoredCheckpoint.epoch.desc())
            .all()
        )
        candidates = [(r.path, r.sha256) for r in rows]
    for path, sha in candidates:
        try:
            blob = torch.load(verified(path, sha), map_location="cpu", weights_only=True)
        except ArtifactCorrupted as exc:
            log.warning("skipping checkpoint: %s", exc)
            continue
        checkpoint = Checkpoint(
            epoch=blob["epoch"],
            model_state=blob["model_state"],
            optimizer_state=blob["optimizer_state"],
            generator_state=blob["generator_state"],
            metrics=[EpochMetrics(**m) for m in blob["metrics"]],
        )
        return checkpoint, list(blob.get("usage", []))
    return None, []


def _store_epoch(
    ctx: JobContext, spec: TrainJobSpec, metrics: Any, ckpt: Any, usage: list[dict[str, Any]], **job_updates: Any
) -> None:
    """Write the checkpoint file, then its row, the epoch's metrics and an event in one transaction.

    ``usage``: backend usage of every epoch so far (empty on ``exact``); the last entry goes into the event.
    """
    path = checkpoint_path(ctx.settings.artifacts_dir, ctx.job_id, ckpt.epoch)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "epoch": ckpt.epoch,
            "model_state": ckpt.model_state,
            "optimizer_state": ckpt.optimizer_state,
            "generator_state": ckpt.generator_state,
            "metrics": [_metrics_dict(m) for m in ckpt.metrics],
            "usage": usage,
        },
        tmp,
    )
    sha, size = finalize(tmp, path)
    ctx.check(force=True)
    with session_scope(ctx.sessions) as s:
        s.query(StoredCheckpoint).filter_by(job_id=ctx.job_id, epoch=ckpt.epoch).delete()
        s.query(EpochMetric).filter_by(job_id=ctx.job_id, epoch=metrics.epoch).delete()
        s.add(StoredCheckpoint(job_id=ctx.job_id, epoch=ckpt.epoch, path=str(path), sha256=sha, size_bytes=size))
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
        {
            **_metrics_dict(metrics),
            **(usage[-1] if usage else {}),
            "epochs": spec.training.epochs,
            "checkpoint_sha256": sha,
        },
        progress=metrics.epoch / spec.training.epochs,
        **job_updates,
    )


def _trainer(spec: TrainJobSpec) -> tuple[Callable[..., Any], Any]:
    """``train(model, data, **callbacks)`` for the job's method with its configuration bound, and that
    configuration (``TrainConfig`` or ``LocalConfig``; fields the job leaves unset keep the trainer's
    defaults)."""
    from sqsnn.training.bptt import TrainConfig, train
    from sqsnn.training.local import LocalConfig, train_local

    t = spec.training
    given: dict[str, Any] = {"batch_size": t.batch_size, "lr": t.lr, "logit_scale": t.logit_scale}
    given |= {"eval_runs": t.eval_runs}
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


def training_plan(spec: TrainJobSpec, settings: Any, n_train: int | None = None, n_test: int | None = None) -> Any:
    """The memory and compute time of training job ``spec`` (``workers.bounds.TrainingPlan``) from its shape
    alone, without loading the dataset: the registry's sizes (``n_train`` / ``n_test``: the loaded sides, when
    known; the test split is evaluated after every epoch, ``training.eval_runs`` times); raises
    ``workers.bounds.WorkTooLarge`` when over a limit. None when the dataset's size depends on the files found
    (checked again by the worker once loaded)."""
    from sqsnn.datasets import list_datasets
    from workers.bounds import plan_training

    info = next(i for i in list_datasets() if i.name == spec.dataset.name)
    n = n_train if n_train is not None else info.n_train
    if n is None:
        return None
    if spec.dataset.limit_train is not None:
        n = min(n, spec.dataset.limit_train)
    held = n_test if n_test is not None else info.n_test or 0
    if spec.dataset.limit_test is not None:
        held = min(held, spec.dataset.limit_test)
    _, config = _trainer(spec)
    width = info.image_shape[0] * info.image_shape[1]
    classes = len(spec.dataset.classes) if spec.dataset.classes else info.n_classes
    steps = info.steps if info.kind == "frames" and info.steps is not None else config.T
    runs = getattr(config, "samples", 1)
    sizes = [width, *spec.model.hidden, classes]
    evaluated = held * config.eval_runs
    return plan_training(sizes, steps, config.batch_size, n, config.epochs, runs, settings, evaluated)


def _load_data(spec: TrainJobSpec) -> Any:
    """The job's dataset."""
    from sqsnn.datasets import load_dataset

    return load_dataset(
        spec.dataset.name,
        classes=spec.dataset.classes,
        limit_train=spec.dataset.limit_train,
        limit_test=spec.dataset.limit_test,
        val_fraction=0.0,  # jobs keep evaluating the test split every epoch (no validation split)
    )


def _network_config(spec: TrainJobSpec, data: Any) -> Any:
    """The job's ``NetworkConfig`` for ``data`` (input size and class count from the dataset)."""
    from sqsnn.network import NetworkConfig

    return NetworkConfig(
        sizes=[int(data.x_train.shape[-1]), *spec.model.hidden, data.n_classes],
        mode=spec.model.mode,
        bias=spec.model.bias,
        direct=spec.model.direct,
        surrogate=spec.model.surrogate,
        seed=spec.seed,
    )


def _policy(spec: TrainJobSpec) -> Any:
    """The backends' ``RunPolicy`` (fallback and budget) of a job."""
    from backends.options import Budget, RunPolicy

    budget = spec.budget or Budget()
    return RunPolicy(fallback=spec.fallback, budget=budget)


def _spend_dict(spend: Any) -> dict[str, Any]:
    """A ``backends.meter.Spend`` as a JSON-ready dict."""
    return {"submissions": spend.submissions, "tasks": spend.tasks, "shots": spend.shots, "cost_usd": spend.cost_usd}


def budget_gap(total: Any, budget: Any) -> str | None:
    """Why ``total`` (a ``Spend``) does not fit ``budget``, or None when it does."""
    if budget.max_shots is not None and total.shots > budget.max_shots:
        return f"{total.shots} shots exceed max_shots={budget.max_shots}"
    if budget.max_cost_usd is not None:
        if total.cost_usd is None:
            return f"the backend has no public price, so max_cost_usd={budget.max_cost_usd} cannot be checked"
        if total.cost_usd > budget.max_cost_usd:
            return f"${total.cost_usd:.2f} exceeds max_cost_usd={budget.max_cost_usd}"
    return None


def training_estimate(spec: TrainJobSpec, backend: Any, data: Any | None = None) -> Any:
    """The ``backends.training.TrainingEstimate`` (per epoch, the final evaluation, in total) of training job
    ``spec`` on ``backend`` (a backend object): what its local rule submits there. ``data``: the job's
    dataset when already loaded (else loaded here; its size sets the batch count)."""
    from backends.training import estimate_training

    data = _load_data(spec) if data is None else data
    _, config = _trainer(spec)
    sizes = _network_config(spec, data).sizes
    n_train, n_test = len(data.y_train), len(data.y_test)
    return estimate_training(sizes, config, n_train, backend, direct=spec.model.direct, n_test=n_test)


def estimate_training_job(spec: TrainJobSpec) -> dict[str, Any]:
    """Price a training job before it is submitted: submissions, tasks, shots and estimated cost (USD, None
    where no public price applies) per epoch, of the final test evaluation on the backend, and in total, and
    whether the job's budget covers them.

    On ``exact`` nothing is submitted (all zero). Loads the dataset (its size sets the batch count).
    """
    from backends.meter import Spend
    from backends.registry import get_backend

    out: dict[str, Any] = {"backend": spec.backend, "epochs": spec.training.epochs}
    if spec.backend == "exact":
        zero = _spend_dict(Spend())
        _, config = _trainer(spec)
        batches = -(-len(_load_data(spec).y_train) // config.batch_size)
        return {
            **out,
            "batches_per_epoch": batches,
            "per_epoch": zero,
            "evaluation": zero,
            "total": zero,
            "price_note": "in-process",
        }
    est = training_estimate(spec, get_backend(spec.backend, spec.options))
    gap = budget_gap(est.total, _policy(spec).budget)
    return {
        **out,
        "batches_per_epoch": est.batches,
        "per_epoch": _spend_dict(est.per_epoch),
        "evaluation": _spend_dict(est.evaluation),
        "total": _spend_dict(est.total),
        "price_note": est.price_note,
        "within_budget": gap is None,
        "budget_note": gap or "the budget covers the whole job",
    }


def _record_spend(ctx: JobContext, spend: Any) -> None:
    """Store the job's running shots and cost (``Spend``) on its row, so that an attempt that dies mid-epoch
    still leaves what it submitted on record for the next attempt's budget."""
    with session_scope(ctx.sessions) as s:
        row = s.get(Job, ctx.job_id)
        assert row is not None
        row.shots, row.cost_usd = spend.shots, spend.cost_usd or 0.0
        s.commit()


def _backend_hooks(
    ctx: JobContext,
    spec: TrainJobSpec,
    config: Any,
    sizes: list[int],
    n_train: int,
    usage: list[dict[str, Any]],
    job: Job,
) -> tuple[Any, Any]:
    """Metered ``backends.training.BackendTraining`` for a job off ``exact``, and the ``Spend`` one epoch
    costs. The meter starts from the epochs already done (``usage``). On a simulator its shots and cost are
    raised to those on the job row when an earlier attempt died after submitting more (that attempt's
    submissions are lost, the resumed one submits anew). On a remote QPU the submissions are recorded
    (:class:`workers.qpu_training.RecordedBackend`) and the resumed attempt adopts and charges them again as
    it replays the epoch, so the meter starts from the finished epochs only. Raises ``BudgetExceeded``
    before any submission when the budget cannot pay for one more epoch (so a job stopped by its budget
    always has a checkpoint)."""
    from backends.base import BudgetExceeded
    from backends.common import derive_seed
    from backends.meter import Spend
    from backends.training import backend_training, estimate_training
    from workers.hardware import resolve_backend
    from workers.qpu_training import RecordedBackend
    from workers.routing import is_hardware

    spent = Spend()
    for u in usage:
        spent = spent.add(Spend(u["submissions"], u["tasks"], u["shots"], u["cost_usd"]))
    policy = _policy(spec)
    seed = derive_seed(spec.seed, len(usage))  # a fresh stream after a resume
    if is_hardware(spec.backend):
        backend, fallback = resolve_backend(ctx.settings, spec.backend, spec.options, policy)
        if is_hardware(backend.name):
            backend = RecordedBackend(ctx, backend)
        hw = backend_training(backend, config, spec.model.mode, policy=policy, seed=seed, spent=spent)
        hw.fallback = fallback
    else:
        cost = None if spent.cost_usd is None else max(spent.cost_usd, job.cost_usd or 0.0)
        spent = Spend(spent.submissions, spent.tasks, max(spent.shots, job.shots or 0), cost)
        hw = backend_training(
            spec.backend, config, spec.model.mode, options=spec.options, policy=policy, seed=seed, spent=spent
        )
    epoch = estimate_training(sizes, config, n_train, hw.backend, direct=spec.model.direct).per_epoch
    gap = budget_gap(spent.add(epoch), policy.budget)
    if gap is not None:
        raise BudgetExceeded(
            f"the budget cannot pay for the next epoch ({_spend_dict(epoch)} per epoch on {hw.backend.name}): "
            f"{gap}; raise the budget or lower shots, samples, directions or the training set"
        )
    return hw, epoch


def _evaluate_on_backend(ctx: JobContext, spec: TrainJobSpec, hw: Any, model: Any, data: Any) -> dict[str, Any]:
    """The trained network's single-shot test accuracy measured on the training backend, charged to the
    budget, with that evaluation's spend; when the budget cannot pay for it, None and why."""
    from backends.base import BudgetExceeded, ProviderError
    from backends.common import derive_seed
    from backends.training import backend_accuracy

    ctx.substate("evaluating", backend=hw.backend.name, samples=len(data.y_test))
    before = hw.meter.reading()
    try:
        ev = backend_accuracy(
            hw,
            model,
            data.x_test,
            data.y_test,
            data.kind,
            T=spec.encoder.T,
            p_max=spec.encoder.p_max,
            generator=torch.Generator().manual_seed(spec.seed),
            seed=derive_seed(spec.seed, EVAL_SEED_KEY),
        )
    except (BudgetExceeded, ProviderError) as exc:
        return {"backend_test_accuracy": None, "backend_evaluation": f"not evaluated on the backend: {exc}"}
    spend = _spend_dict(hw.meter.reading().minus(before))
    detail = {**spend, "impossible_spikes": ev.impossible_spikes, "observed_spikes": ev.observed_spikes}
    return {"backend_test_accuracy": ev.accuracy, "backend_evaluation": detail}


def _recorder(hw: Any) -> Any:
    """The ``RecordedBackend`` of a job training on a remote QPU, else None."""
    from workers.qpu_training import RecordedBackend

    return hw.backend if hw is not None and isinstance(hw.backend, RecordedBackend) else None


def _reserve(ctx: JobContext, spec: TrainJobSpec, data: Any, backend: Any) -> None:
    """Check the owner's daily spend limits for the whole job's estimate on ``backend`` and reserve it."""
    from workers.qpu_training import reserve_training

    est = training_estimate(spec, backend, data).total
    reserve_training(ctx, est.shots, est.cost_usd)


def run_training(ctx: JobContext) -> None:
    """Train the job's network; store checkpoints, metrics (with backend usage) and the model."""
    from backends.base import BudgetExceeded, ProviderError
    from sqsnn.network import SQSNetwork
    from sqsnn.training.bptt import TrainingStopped

    job = ctx.load()
    spec = TrainJobSpec.model_validate(job.spec)
    ctx.substate("loading_data")
    data = _load_data(spec)
    training_plan(
        spec, ctx.settings, len(data.y_train), len(data.y_test)
    )  # WorkTooLarge (a ValueError) fails the job, naming why
    config = _network_config(spec, data)
    model = SQSNetwork(config)
    trainer, trainer_config = _trainer(spec)
    resume, usage = _load_resume(ctx)
    hw = None
    if spec.backend != "exact":
        try:
            hw, per_epoch = _backend_hooks(ctx, spec, trainer_config, config.sizes, len(data.y_train), usage, job)
        except BudgetExceeded as exc:
            ctx.finish("failed", reason=f"budget exhausted: {exc}")
            return
        ctx.emit("estimate", {"backend": hw.backend.name, "per_epoch": _spend_dict(per_epoch)})
        trainer = functools.partial(trainer, **hw.hooks())
    recorder = _recorder(hw)
    if recorder is not None:
        _reserve(ctx, spec, data, recorder)
        recorder.at(f"e{resume.epoch + 1 if resume is not None else 1}/b0")
    used = hw.backend.name if hw is not None else "exact"
    ctx.substate(
        "learning",
        method=spec.training.method,
        backend=used,
        resumed_from_epoch=resume.epoch if resume is not None else 0,
        parameters=model.num_parameters(),
    )
    with session_scope(ctx.sessions) as s:
        row = s.get(Job, ctx.job_id)
        assert row is not None
        row.backend_used = used
        s.commit()

    last = {"spend": hw.meter.reading() if hw else None, "impossible": 0, "observed": 0}

    def job_spend() -> dict[str, Any]:
        """The job row's spend as the meter has it (a recorded QPU run keeps the sum over its records)."""
        assert hw is not None
        if recorder is not None:
            return {}
        now = hw.meter.reading()
        return {"shots": now.shots, "cost_usd": now.cost_usd or 0.0}

    def checkpoint_note() -> tuple[int, str]:
        done = usage[-1]["epoch"] if usage else 0
        return done, f"the newest checkpoint is epoch {done}" if done else "no epoch was completed (no checkpoint)"

    def on_epoch(metrics: Any, ckpt: Any) -> None:
        if hw is None:
            _store_epoch(ctx, spec, metrics, ckpt, usage)
            return
        now = hw.meter.reading()
        readout = hw.readout
        usage.append(
            {
                "epoch": metrics.epoch,
                **_spend_dict(now.minus(last["spend"])),
                "impossible_spikes": readout.impossible - last["impossible"],
                "observed_spikes": readout.observed - last["observed"],
            }
        )
        last.update(spend=now, impossible=readout.impossible, observed=readout.observed)
        _store_epoch(ctx, spec, metrics, ckpt, usage, **job_spend())
        if recorder is not None:
            recorder.at(f"e{metrics.epoch + 1}/b0")

    def on_batch(epoch: int, batch_index: int, loss: float) -> None:
        shots: dict[str, Any] = {}
        if recorder is not None:
            assert hw is not None
            recorder.at(f"e{epoch}/b{batch_index + 1}")
            shots = {"shots": hw.meter.spent.shots, **dataclasses.asdict(recorder.counts)}
        elif hw is not None:
            _record_spend(ctx, hw.meter.spent)
            shots = {"shots": hw.meter.spent.shots}
        ctx.progress({"epoch": epoch, "batch": batch_index, "loss": float(loss), **shots})

    try:
        result = trainer(model, data, resume=resume, on_epoch=on_epoch, on_batch=on_batch, should_stop=ctx.should_stop)
    except TrainingStopped:
        ctx.check(force=True)  # raises JobCancelled or LeaseLost with the reason
        raise LeaseLost("training stopped without a cancellation") from None
    except (BudgetExceeded, ProviderError) as exc:
        done, kept = checkpoint_note()
        if recorder is not None:
            recorder.close()
        if isinstance(exc, BudgetExceeded):
            stopped, reason = "budget", f"budget exhausted: {exc}. Training stopped before that submission; {kept}"
            spend = job_spend()
        else:
            stopped, reason, spend = "provider", f"{exc}. Training stopped; {kept}", {}
        ctx.finish(
            "failed",
            reason=reason,
            result={"stopped": stopped, "checkpoint_epoch": done, "epochs_usage": usage},
            **spend,
        )
        return

    if recorder is not None:
        recorder.at("evaluation")
    evaluation = _evaluate_on_backend(ctx, spec, hw, model, data) if hw is not None else {}
    if recorder is not None:
        recorder.close()
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
        "backend": used,
    }
    model.save(tmp, **meta)
    sha, size = finalize(tmp, path)
    summary = {
        "test_accuracy": result.test_accuracy,
        "spike_rates": list(result.spike_rates),
        "epochs": [_metrics_dict(m) for m in result.metrics],
    }
    outcome: dict[str, Any] = {
        "model_id": model_id,
        "test_accuracy": result.test_accuracy,
        "spike_rates": list(result.spike_rates),
    }
    updates: dict[str, Any] = {}
    if hw is not None:
        outcome |= {
            "backend": used,
            **_spend_dict(hw.meter.reading()),
            "impossible_spikes": hw.readout.impossible,
            "observed_spikes": hw.readout.observed,
            "epochs_usage": usage,
            **evaluation,
        }
        if hw.fallback is not None:
            outcome["fallback"] = dataclasses.asdict(hw.fallback)
        if recorder is not None:
            from workers.qpu_training import provider_submissions

            outcome |= {"provider_submissions": provider_submissions(ctx), **dataclasses.asdict(recorder.counts)}
        summary |= {"epochs_usage": usage, **evaluation}
        updates = job_spend()
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
    ctx.finish("succeeded", result=outcome, **updates)
