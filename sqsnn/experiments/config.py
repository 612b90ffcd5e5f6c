"""Experiment configuration (TOML) and its expansion into grid cells.

Example::

    name = "digits"
    results_dir = "results/digits"      # relative to the working directory
    report = "docs/results.md"          # optional: where the markdown table goes (default results_dir/results.md)
    data_dir = "/data"                  # optional: on-disk datasets (mnist, fmnist, kmnist, mnist-dvs)
    datasets = ["digits", "mnist-5k"]
    seeds = [0, 1, 2]
    threads = 1                         # optional: torch intra-op threads while running

    [budget]
    max_epochs = 20                     # caps every cell's epochs
    max_cell_seconds = 900              # a cell stops between batches after this; its finished epochs count
    max_total_seconds = 7200            # no new cell starts after this (run again to continue)

    [dataset_options.mnist]             # keyword arguments of load_dataset for one dataset
    limit_train = 10000

    [[models]]
    label = "SQSNN"
    kind = "sqsnn"                      # sqsnn | lif | qlif
    hidden = [128]                      # hidden widths; input and output widths come from the dataset
    modes = ["quantum", "memoryless", "official"]   # sqsnn only
    method = "bptt"                     # bptt | local (local: sqsnn only)
    network = { bias = false }          # NetworkConfig / LIFConfig / QLIFConfig fields (not sizes/seed/mode)
    train = { epochs = 10, lr = 0.002 } # TrainConfig (bptt) or LocalConfig (local) fields (not seed)

    [[models]]
    label = "LIF"
    kind = "lif"
    match_parameters = "SQSNN"          # hidden width chosen to match that model's parameter count
    hidden = [128]
    train = { epochs = 10 }

Unknown keys are refused with an error naming the key and the accepted ones.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqsnn.baselines.lif import LIFConfig
from sqsnn.baselines.qlif import QLIFConfig
from sqsnn.network import NetworkConfig
from sqsnn.neuron import MEMORY_MODES
from sqsnn.training.bptt import TrainConfig
from sqsnn.training.local import LocalConfig

Kind = Literal["sqsnn", "lif", "qlif"]
Method = Literal["bptt", "local"]
NETWORK_FIELDS: dict[str, set[str]] = {
    "sqsnn": {f.name for f in dataclasses.fields(NetworkConfig)} - {"sizes", "seed", "mode"},
    "lif": {f.name for f in dataclasses.fields(LIFConfig)} - {"sizes", "seed"},
    "qlif": {f.name for f in dataclasses.fields(QLIFConfig)} - {"sizes", "seed"},
}
TRAIN_FIELDS: dict[str, set[str]] = {
    "bptt": {f.name for f in dataclasses.fields(TrainConfig)} - {"seed"},
    "local": {f.name for f in dataclasses.fields(LocalConfig)} - {"seed"},
}


class ConfigError(ValueError):
    """An invalid experiment configuration; the message names the offending key."""


def _check_keys(where: str, table: dict[str, Any], accepted: set[str]) -> None:
    unknown = sorted(set(table) - accepted)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}")


@dataclass(frozen=True)
class ModelSpec:
    """One ``[[models]]`` entry."""

    label: str
    kind: Kind
    method: Method
    hidden: list[int]
    modes: list[str]
    network: dict[str, Any]
    train: dict[str, Any]
    match_parameters: str | None


@dataclass(frozen=True)
class RunLimits:
    """Limits of an experiment run, the config file's ``[budget]`` table: epochs per cell, seconds per cell
    and in total (None: unlimited). (A job's shots and dollars are :class:`backends.options.Budget`.)"""

    max_epochs: int | None = None
    max_cell_seconds: float | None = None
    max_total_seconds: float | None = None


@dataclass(frozen=True)
class Cell:
    """One grid cell: a model entry, memory mode ("-" for baselines), dataset and seed."""

    model: ModelSpec
    mode: str
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        """Stable identifier used in every CSV file."""
        return f"{self.model.label}/{self.mode}/{self.model.method}/{self.dataset}/seed{self.seed}"

    @property
    def slug(self) -> str:
        """The key as a file-name-safe string."""
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in self.key)


@dataclass(frozen=True)
class ExperimentConfig:
    """A parsed configuration file."""

    path: Path
    name: str
    results_dir: Path
    datasets: list[str]
    seeds: list[int]
    models: list[ModelSpec]
    budget: RunLimits = field(default_factory=RunLimits)
    data_dir: Path | None = None
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int | None = None
    report: Path | None = None

    def cells(self) -> list[Cell]:
        """Every cell in run order: dataset, then model entry, then mode, then seed."""
        return [
            Cell(model, mode, dataset, seed)
            for dataset in self.datasets
            for model in self.models
            for mode in model.modes
            for seed in self.seeds
        ]

    def model(self, label: str) -> ModelSpec:
        """The model entry with this label."""
        for m in self.models:
            if m.label == label:
                return m
        raise ConfigError(f"no model labelled {label!r}; labels: {', '.join(m.label for m in self.models)}")


def _parse_model(index: int, raw: dict[str, Any]) -> ModelSpec:
    where = f"models[{index}]"
    _check_keys(where, raw, {"label", "kind", "method", "hidden", "modes", "network", "train", "match_parameters"})
    kind = raw.get("kind")
    if kind not in NETWORK_FIELDS:
        raise ConfigError(f"{where}.kind must be one of sqsnn, lif, qlif; got {kind!r}")
    method = raw.get("method", "bptt")
    if method not in TRAIN_FIELDS:
        raise ConfigError(f"{where}.method must be 'bptt' or 'local'; got {method!r}")
    if method == "local" and kind != "sqsnn":
        raise ConfigError(f"{where}: the local rule trains SQSNNs only (kind = 'sqsnn'), not {kind!r}")
    hidden = raw.get("hidden", [])
    if not isinstance(hidden, list) or not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ConfigError(f"{where}.hidden must be a non-empty list of positive widths; got {hidden!r}")
    if kind == "sqsnn":
        modes = raw.get("modes", ["quantum"])
        bad = [m for m in modes if m not in MEMORY_MODES]
        if bad or not modes:
            raise ConfigError(f"{where}.modes must list memory modes among {', '.join(MEMORY_MODES)}; got {modes!r}")
    elif "modes" in raw:
        raise ConfigError(f"{where}.modes applies to kind 'sqsnn' only")
    else:
        modes = ["-"]
    network = dict(raw.get("network", {}))
    _check_keys(f"{where}.network", network, NETWORK_FIELDS[kind])
    train = dict(raw.get("train", {}))
    _check_keys(f"{where}.train", train, TRAIN_FIELDS[method])
    match = raw.get("match_parameters")
    if match is not None and kind != "lif":
        raise ConfigError(f"{where}.match_parameters applies to kind 'lif' only")
    return ModelSpec(
        label=str(raw.get("label", f"{kind}-{method}")),
        kind=kind,
        method=method,
        hidden=list(hidden),
        modes=list(modes),
        network=network,
        train=train,
        match_parameters=match,
    )


def load_config(path: str | Path) -> ExperimentConfig:
    """Parse and validate an experiment TOML file.

    Raises:
        ConfigError: unknown or invalid keys (the message names them), duplicate labels, or a
            ``match_parameters`` that names no model.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no experiment configuration at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    accepted = {
        "report",
        "name",
        "results_dir",
        "data_dir",
        "datasets",
        "seeds",
        "threads",
        "budget",
        "dataset_options",
        "models",
    }
    _check_keys(str(path), raw, accepted)
    for key in ("results_dir", "datasets", "models"):
        if key not in raw:
            raise ConfigError(f"{path}: missing required key {key!r}")
    budget_raw = raw.get("budget", {})
    _check_keys("budget", budget_raw, {"max_epochs", "max_cell_seconds", "max_total_seconds"})
    models = [_parse_model(i, m) for i, m in enumerate(raw["models"])]
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"model labels must be unique; got {labels}")
    for m in models:
        if m.match_parameters is not None and m.match_parameters not in labels:
            raise ConfigError(f"model {m.label!r}: match_parameters names no model ({m.match_parameters!r})")
    seeds = raw.get("seeds", [0])
    if not seeds or any(not isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers; got {seeds!r}")
    return ExperimentConfig(
        path=path,
        name=str(raw.get("name", path.stem)),
        results_dir=Path(raw["results_dir"]),
        datasets=list(raw["datasets"]),
        seeds=list(seeds),
        models=models,
        budget=RunLimits(**budget_raw),
        data_dir=Path(raw["data_dir"]) if "data_dir" in raw else None,
        dataset_options={k: dict(v) for k, v in raw.get("dataset_options", {}).items()},
        threads=_threads(raw.get("threads")),
        report=Path(raw["report"]) if "report" in raw else None,
    )


def _threads(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"threads must be a positive integer; got {value!r}")
    return value
