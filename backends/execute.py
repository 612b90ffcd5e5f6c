"""Run a whole SQSNN through a backend, layer by layer, single shot per sample.

The spikes of layer l, returned by the backend, give layer l+1's currents classically
(``W s + b``, plus the direct input synapses of the last layer when the network has them). One
submission (one provider job on Qiskit backends) per layer per batch. The readout needs per-step spike
probabilities only to break ties: they are computed exactly, classically, *conditioned on the observed
output spikes* (``sqsnn.training.observed.follow_observed``), so they are the probabilities the hardware run
had; an outcome the ideal model forbids (a device error) leaves them finite (see that module).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch import Tensor

from backends.base import BackendUnavailable, FallbackRecord, LayerResult
from backends.common import BaseBackend, derive_seed
from backends.estimate import NetworkEstimate, enforce_budget, estimate_network
from backends.options import RunPolicy
from backends.registry import Resolved, fall_back, resolve
from sqsnn.network import NetworkOutput, SQSLayer, SQSNetwork
from sqsnn.neuron import MemoryMode, SQSParams
from sqsnn.training.observed import follow_observed


@dataclass
class NetworkRun:
    """Result of :func:`run_network`: every layer's spikes ``(T, B, n)`` and conditional probabilities,
    predictions ``(B,)``, per-layer execution records, the estimate that was checked, the fallback, and how
    many observed spikes the ideal model gave probability below 1e-12 (device errors)."""

    spikes: list[Tensor]
    probs: list[Tensor]
    predictions: Tensor
    layers: list[LayerResult]
    estimate: NetworkEstimate
    backend: str
    fallback: FallbackRecord | None
    wall_s: float
    impossible_spikes: int = 0


def conditional_probabilities(z: Tensor, params: SQSParams, mode: MemoryMode, spikes: Tensor) -> Tensor:
    """``p(s_t = 1 | observed s_<t)`` ``(T, B, n)`` for currents ``z`` and observed ``spikes`` (T, B, n)."""
    return follow_observed(z, params, mode, spikes).probs


def run_network(
    net: SQSNetwork,
    x: Tensor,
    backend: str | BaseBackend,
    *,
    options: Mapping[str, Any] | BaseModel | None = None,
    policy: RunPolicy | None = None,
    seed: int | None = None,
) -> NetworkRun:
    """Classify encoded inputs ``x (T, B, sizes[0])`` on ``backend`` (a name or a backend object).

    The budget of ``policy`` is enforced on the estimate before anything is submitted. If the backend is
    unavailable, or becomes unavailable at submission, ``policy.fallback`` decides (and is recorded).
    """
    start = time.perf_counter()
    policy = policy or RunPolicy()
    resolved = resolve(backend, options, policy) if isinstance(backend, str) else Resolved(backend, None)
    steps, batch, _ = x.shape
    estimate = estimate_network(net.config.sizes, steps, batch, resolved.backend)
    enforce_budget(estimate, policy.budget)
    mode = net.config.mode
    spikes: list[Tensor] = []
    probs: list[Tensor] = []
    records: list[LayerResult] = []
    impossible = 0
    h = x.to(torch.float64)
    with torch.no_grad():
        for index, layer in enumerate(net.layers):
            assert isinstance(layer, SQSLayer)
            z = layer.currents(h, x.to(torch.float64) if layer.direct_weight is not None else None)
            layer_seed = derive_seed(seed, index)
            try:
                result = resolved.backend.run_layer(z, layer.params(), mode=mode, seed=layer_seed)
            except BackendUnavailable as exc:
                resolved = fall_back(resolved.backend.name, str(exc), policy)
                result = resolved.backend.run_layer(z, layer.params(), mode=mode, seed=layer_seed)
            result.fallback = resolved.fallback
            records.append(result)
            h = torch.as_tensor(result.single_shot, dtype=torch.float64)
            spikes.append(h)
            path = follow_observed(z, layer.params(), mode, h)
            probs.append(path.probs)
            impossible += path.impossible
    predictions = net.predict(NetworkOutput(spikes, probs))
    return NetworkRun(
        spikes=spikes,
        probs=probs,
        predictions=predictions,
        layers=records,
        estimate=estimate,
        backend=resolved.backend.name,
        fallback=resolved.fallback,
        wall_s=time.perf_counter() - start,
        impossible_spikes=impossible,
    )


def qubit_utilisation(run: NetworkRun) -> float:
    """Qubits holding a neuron / qubits of all executed circuits (1.0 when every circuit is full)."""
    used = sum(layer.qubits_used for layer in run.layers)
    total = sum(layer.circuits * layer.qubits_per_circuit for layer in run.layers)
    return used / total if total else float("nan")
