"""Run (or resume) an experiment grid; see :mod:`sqsnn.experiments.config` for the file format.

Each cell trains a fresh model (seeded with the cell's seed) with BPTT or the local rule, checkpoints after
every epoch under ``checkpoints/`` and, when done, appends its rows to the CSV files of
:mod:`sqsnn.experiments.records` and deletes its checkpoint. Running the same configuration again skips
the cells already in ``cells.csv`` and resumes an interrupted cell from its last checkpoint. The table and
figures (:func:`sqsnn.experiments.report.report`) are rebuilt after every finished cell.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqsnn.baselines.lif import LIFConfig, LIFNetwork, matched_hidden_sizes
from sqsnn.baselines.qlif import QLIFConfig, QLIFNetwork
from sqsnn.datasets import Dataset, load_dataset
from sqsnn.encoders import encode
from sqsnn.experiments.config import Cell, ConfigError, ExperimentConfig, load_config
from sqsnn.experiments.records import (
    CELL_COLUMNS,
    CELLS,
    EPOCH_COLUMNS,
    EPOCHS,
    NEURON_COLUMNS,
    NEURONS,
    RASTER,
    RASTER_COLUMNS,
    append_rows,
    join_numbers,
    read_rows,
)
from sqsnn.experiments.report import report
from sqsnn.model_io import load_checkpoint, save_checkpoint
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.bptt import Checkpoint, EpochMetrics, TrainConfig, TrainingStopped, TrainResult, train
from sqsnn.training.local import LocalConfig, train_local
from sqsnn.training.loop import with_dtype


@dataclass
class RunSummary:
    """What one call of :func:`run_experiment` did."""

    ran: list[str]
    skipped: list[str]
    remaining: list[str]  # not started because the total time budget ran out


def layer_sizes(cell: Cell, data: Dataset, config: ExperimentConfig) -> list[int]:
    """Layer widths of the cell's model on ``data`` (LIF widths matched to the named model if asked)."""
    sizes = [int(data.x_train.shape[-1]), *cell.model.hidden, data.n_classes]
    if cell.model.match_parameters is None:
        return sizes
    target_spec = config.model(cell.model.match_parameters)
    target = build_model(Cell(target_spec, target_spec.modes[0], cell.dataset, cell.seed), data, config)
    bias = bool(cell.model.network.get("bias", LIFConfig.bias))
    return matched_hidden_sizes(sizes, target.num_parameters(), bias=bias)  # type: ignore[operator]


def build_model(cell: Cell, data: Dataset, config: ExperimentConfig) -> nn.Module:
    """A fresh model for ``cell`` on ``data``."""
    sizes = layer_sizes(cell, data, config)
    opts = cell.model.network
    if cell.model.kind == "sqsnn":
        return SQSNetwork(NetworkConfig(sizes=sizes, mode=cell.mode, seed=cell.seed, **opts))  # type: ignore[arg-type]
    if cell.model.kind == "lif":
        return LIFNetwork(LIFConfig(sizes=sizes, seed=cell.seed, **opts))
    return QLIFNetwork(QLIFConfig(sizes=sizes, seed=cell.seed, **opts))


@torch.no_grad()
def spike_profile(
    model: nn.Module, data: Dataset, T: int, p_max: float, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-neuron spike rates ``(n_l,)`` on the test set and the spikes ``(T, n_l)`` of test sample 0."""
    model.train(False)
    data = with_dtype(data, next(model.parameters()).dtype)  # a float32-trained model reads float32 spikes
    gen = torch.Generator().manual_seed(seed)
    sums: list[torch.Tensor] = []
    raster: list[torch.Tensor] = []
    steps = 0
    for start in range(0, len(data.y_test), 500):
        x = encode(data.x_test[start : start + 500], data.kind, T, p_max, gen)
        out = model(x, gen)
        if not sums:
            sums = [s.sum(dim=(0, 1)) for s in out.spikes]
            raster = [s[:, 0, :].clone() for s in out.spikes]
        else:
            sums = [acc + s.sum(dim=(0, 1)) for acc, s in zip(sums, out.spikes, strict=True)]
        steps += x.shape[0] * x.shape[1]
    return [s / steps for s in sums], raster


def run_cell(
    cell: Cell, data: Dataset, config: ExperimentConfig, log: Callable[[str], None]
) -> tuple[dict[str, Any], list[EpochMetrics], nn.Module, int, float]:
    """Train one cell (resuming from its checkpoint); returns (cell row, epochs, model, T, p_max).

    The model returned holds the selected epoch's weights (best validation accuracy when the dataset has
    a validation split); the row's ``test_accuracy`` is that model's single test evaluation.
    """
    spec = cell.model
    ckpt_path = config.results_dir / "checkpoints" / f"{cell.slug}.pt"
    resume: Checkpoint | None = None
    if ckpt_path.is_file():
        resume = load_checkpoint(ckpt_path)
        log(f"  resuming {cell.key} after epoch {resume.epoch}")
    model = build_model(cell, data, config)
    options = dict(spec.train)
    if config.budget.max_epochs is not None:
        default_epochs = TrainConfig.epochs if spec.method == "bptt" else LocalConfig.epochs
        options["epochs"] = min(int(options.get("epochs", default_epochs)), config.budget.max_epochs)
    started = time.perf_counter()
    limit = config.budget.max_cell_seconds

    def should_stop() -> bool:
        return limit is not None and time.perf_counter() - started > limit

    def on_epoch(metrics: EpochMetrics, checkpoint: Checkpoint) -> None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, ckpt_path)
        held_out = (
            f"validation accuracy {metrics.val_accuracy:.4f}"
            if metrics.val_accuracy is not None
            else f"test accuracy {metrics.test_accuracy:.4f}"
        )
        log(f"  {cell.key} epoch {metrics.epoch}: {held_out}")

    def run(options: dict[str, Any], resume: Checkpoint | None, stop: Callable[[], bool] | None) -> TrainResult:
        if spec.method == "bptt":
            config = TrainConfig(seed=cell.seed, **options)
            return train(model, data, config, resume=resume, on_epoch=on_epoch, should_stop=stop)  # type: ignore[arg-type]
        assert isinstance(model, SQSNetwork)
        return train_local(
            model, data, LocalConfig(seed=cell.seed, **options), resume=resume, on_epoch=on_epoch, should_stop=stop
        )

    if spec.method == "bptt":
        tc = TrainConfig(seed=cell.seed, **options)
        T, p_max, estimator = tc.T, tc.p_max, "-"
    else:
        lc = LocalConfig(seed=cell.seed, **options)
        T, p_max, estimator = lc.T, lc.p_max, lc.estimator
    status = "done"
    try:
        result = run(options, resume, should_stop)
    except TrainingStopped:
        status = "budget"
        stopped: Checkpoint | None = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
        log(f"  {cell.key} stopped by max_cell_seconds after {stopped.epoch if stopped else 0} epoch(s)")
        if stopped is None:
            result = TrainResult(metrics=[], test_accuracy=float("nan"), spike_rates=[])
        else:  # no epoch left to train: only the selection and the final test evaluation run
            result = run({**options, "epochs": stopped.epoch}, stopped, None)
    done = result.metrics
    row: dict[str, Any] = {
        "key": cell.key,
        "config": str(config.path),
        "label": spec.label,
        "kind": spec.kind,
        "mode": cell.mode,
        "method": spec.method,
        "estimator": estimator,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "sizes": join_numbers(layer_sizes(cell, data, config)),
        "direct": bool(spec.network.get("direct", False)),
        "num_parameters": model.num_parameters(),  # type: ignore[operator]
        "epochs": len(done),
        "best_epoch": result.best_epoch,
        "val_accuracy": f"{result.val_accuracy:.6f}" if result.val_accuracy is not None else "",
        "test_accuracy": f"{result.test_accuracy:.6f}",
        "spike_rates": join_numbers(result.spike_rates),
        "seconds": f"{sum(m.seconds for m in done):.2f}",
        "status": status,
        "command": f"sqsnn experiment run {config.path}",
    }
    return row, done, model, T, p_max


def run_experiment(
    config: Path | str,
    *,
    seeds: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Run every unfinished cell of the configuration file ``config`` within budget; rebuild the report.

    ``seeds`` restricts the run to the cells of those seeds (of the configuration's), so that separate
    processes can run one configuration's seeds side by side into the same results directory (each finished
    cell is appended to the CSV files in one write; its checkpoint is its own). ``models`` likewise restricts it
    to the models of those labels."""
    cfg = load_config(config)
    if seeds is not None and (unknown := sorted(set(seeds) - set(cfg.seeds))):
        raise ConfigError(f"seed(s) {unknown} not in the configuration's seeds {cfg.seeds}")
    labels = [m.label for m in cfg.models]
    if models is not None and (missing := sorted(set(models) - set(labels))):
        raise ConfigError(f"model(s) {missing} not in the configuration's labels {labels}")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    out = cfg.results_dir
    out.mkdir(parents=True, exist_ok=True)
    finished = {row["key"] for row in read_rows(out / CELLS)}
    started = time.perf_counter()
    summary = RunSummary([], [], [])
    datasets: dict[str, Dataset] = {}
    for cell in cfg.cells():
        if (seeds is not None and cell.seed not in seeds) or (models is not None and cell.model.label not in models):
            continue
        if cell.key in finished:
            summary.skipped.append(cell.key)
            continue
        total = cfg.budget.max_total_seconds
        if total is not None and time.perf_counter() - started > total:
            summary.remaining.append(cell.key)
            continue
        if cell.dataset not in datasets:
            datasets[cell.dataset] = load_dataset(
                cell.dataset, cfg.data_dir, **cfg.dataset_options.get(cell.dataset, {})
            )
        data = datasets[cell.dataset]
        log(f"cell {cell.key}")
        row, epochs, model, T, p_max = run_cell(cell, data, cfg, log)
        rates, raster = spike_profile(model, data, T, p_max, seed=cell.seed)
        append_rows(out / EPOCHS, EPOCH_COLUMNS, [_epoch_row(cell.key, m) for m in epochs])
        append_rows(
            out / NEURONS,
            NEURON_COLUMNS,
            (
                {"key": cell.key, "layer": layer, "neuron": n, "rate": f"{float(r):.6g}"}
                for layer, layer_rates in enumerate(rates)
                for n, r in enumerate(layer_rates)
            ),
        )
        append_rows(
            out / RASTER,
            RASTER_COLUMNS,
            (
                {"key": cell.key, "layer": layer, "step": int(t), "neuron": int(n)}
                for layer, spikes in enumerate(raster)
                for t, n in spikes.nonzero().tolist()
            ),
        )
        append_rows(out / CELLS, CELL_COLUMNS, [row])
        (out / "checkpoints" / f"{cell.slug}.pt").unlink(missing_ok=True)  # the cell is recorded as finished
        summary.ran.append(cell.key)
        report(out, cfg.report, redraw={cell.key})  # every finished cell shows while later ones still run
    if not summary.ran and (out / CELLS).is_file():
        report(out, cfg.report)
    if summary.remaining:
        log(f"{len(summary.remaining)} cell(s) left by max_total_seconds; run the same command to continue")
    return summary


def _epoch_row(key: str, m: EpochMetrics) -> dict[str, Any]:
    return {
        "key": key,
        "epoch": m.epoch,
        "train_loss": f"{m.train_loss:.6g}",
        "train_accuracy": f"{m.train_accuracy:.6f}",
        "val_accuracy": f"{m.val_accuracy:.6f}" if m.val_accuracy is not None else "",
        "test_accuracy": f"{m.test_accuracy:.6f}" if m.test_accuracy is not None else "",
        "spike_rates": join_numbers(m.spike_rates),
        "seconds": f"{m.seconds:.3f}",
    }
