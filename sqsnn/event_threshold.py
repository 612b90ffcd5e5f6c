"""The input density below which event-driven synapses beat dense BLAS, measured on this machine and kept.

Where the two products cross depends on the machine's BLAS and vector width: ``bench/train_throughput.py
--densities`` (784 -> 1000, 1,280 rows, forward + weight gradient, idle 2-core machines) crossed at 0.30 on an
AVX2 machine, at 0.25-0.30 on an AVX-512 AMD EPYC, but at 0.12-0.15 on an AVX-512 Intel machine with a fast MKL. One
constant either left a 1.4x gain unused or lost time, so the threshold is measured.

:func:`event_density` answers, in order:

1. the operator's setting, ``SQSNN_EVENT_DENSITY`` (one number for both dtypes: 0 always dense, 1 always
   event-driven when eligible);
2. this process's earlier answer;
3. the cache file ``event-density.json`` in ``SQSNN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/sqsnn`` or
   ``~/.cache/sqsnn``), one entry per machine signature (CPU model, LLVM CPU name, torch version, torch
   threads, dtype);
4. :func:`measure`, whose answer is written to that file (atomically), so that later processes on the machine,
   and seeded runs among them, take the same paths. A lock next to the file lets one process measure at a
   time; the others wait and read its answer.

:func:`measure` times the forward product and weight gradient of a 784 -> 1000 layer on 1,280 rows (a
784-1000-10 network's first layer at batch 256, T = 5) dense once and event-driven at :data:`DENSITIES` in
increasing order; the threshold is the largest density up to which event-driven was faster at every grid point
(0 when it never was). Each time is the best of :data:`REPEATS` (the least disturbed by other processes). It
takes about a second per dtype.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

VARIABLE = "SQSNN_EVENT_DENSITY"
CACHE_VARIABLE = "SQSNN_CACHE_DIR"
CACHE_FILE = "event-density.json"
DENSITIES: tuple[float, ...] = (0.02, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50)
REPEATS = 3
SHAPE = (1280, 784, 1000)  # rows, inputs, outputs

_known: dict[torch.dtype, float] = {}


def event_density(dtype: torch.dtype) -> float:
    """Threshold for inputs of ``dtype`` (float32 / float64; 0 for others); see the module docstring."""
    setting = os.environ.get(VARIABLE)
    if setting is not None:
        return _parse_setting(setting)
    if dtype not in (torch.float32, torch.float64):
        return 0.0
    if dtype not in _known:
        _known[dtype] = _cached_or_measured(dtype)
    return _known[dtype]


def _parse_setting(setting: str) -> float:
    try:
        value = float(setting)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise ValueError(f"{VARIABLE} must be a number in [0, 1] (0: always dense); got {setting!r}")
    return value


def cache_path() -> Path:
    """Where measured thresholds are kept."""
    base = os.environ.get(CACHE_VARIABLE)
    if base:
        return Path(base) / CACHE_FILE
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sqsnn" / CACHE_FILE


def signature(dtype: torch.dtype) -> str:
    """Key of a measurement: what changes where the crossing lies."""
    import llvmlite.binding as llvm

    return " | ".join(
        [_cpu_model(), llvm.get_host_cpu_name(), f"torch {torch.__version__}", f"threads {torch.get_num_threads()}"]
        + [str(dtype).removeprefix("torch.")]
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cached_or_measured(dtype: torch.dtype) -> float:
    path, key = cache_path(), signature(dtype)
    if (known := _read(path).get(key)) is not None:
        return known
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_name(f".{path.name}.lock").open("a")
    except OSError:  # a read-only home: the value still holds for this process
        return measure(dtype)
    with lock:
        # one process measures at a time (two measuring side by side would time each other): a worker's
        # sibling processes wait here, then read its answer
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = _read(path)
        if key not in entries:
            entries[key] = measure(dtype)
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            scratch.write_text(json.dumps(entries, indent=1, sort_keys=True))
            scratch.replace(path)
        return entries[key]


def _read(path: Path) -> dict[str, float]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in entries.items()} if isinstance(entries, dict) else {}


def crossing(dense: float, event: Sequence[float], densities: Sequence[float] = DENSITIES) -> float:
    """The largest of ``densities`` (increasing) up to which every event-driven time is below ``dense``;
    0 when the first one is not."""
    threshold = 0.0
    for density, seconds in zip(densities, event, strict=True):
        if seconds >= dense:
            break
        threshold = density
    return threshold


def synapse_step(x: torch.Tensor, weight: torch.Tensor, g: torch.Tensor, forced: float) -> Callable[[], None]:
    """Forward + weight gradient (``g``: the currents' gradient) of :func:`sqsnn.synapses.linear` with
    ``event_density`` forced to ``forced`` (0: dense, 1: event-driven)."""
    from sqsnn import synapses

    def step() -> None:
        weight.grad = None
        synapses.linear(x, weight, event_density=forced).backward(g)

    return step


def measure(dtype: torch.dtype, densities: Sequence[float] = DENSITIES) -> float:
    """Time dense and event-driven synapses on this machine and return where they cross (module docstring).
    The first synaptic product of a process may come from an evaluation or a local-rule pass without autograd:
    the measurement turns it back on for itself."""
    with torch.inference_mode(False), torch.enable_grad():
        return _measure(dtype, densities)


def _measure(dtype: torch.dtype, densities: Sequence[float]) -> float:
    gen = torch.Generator().manual_seed(0)
    rows, inputs, outputs = SHAPE
    weight = torch.randn(outputs, inputs, generator=gen, dtype=dtype, requires_grad=True)
    g = torch.randn(rows, outputs, generator=gen, dtype=dtype)

    def timed(x: torch.Tensor, forced: float) -> float:
        return _best_time(synapse_step(x, weight, g, forced))

    dense = timed((torch.rand(rows, inputs, generator=gen) < densities[0]).to(dtype), 0.0)
    event: list[float] = []
    for density in densities:
        event.append(timed((torch.rand(rows, inputs, generator=gen) < density).to(dtype), 1.0))
        if event[-1] >= dense:
            break
    return crossing(dense, event, densities[: len(event)])


def _best_time(step: Callable[[], None]) -> float:
    step()  # warm-up (and compilation)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best
