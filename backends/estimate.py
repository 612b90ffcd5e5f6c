"""Estimate a network run before submitting it, and enforce a job budget on the estimate."""

from __future__ import annotations

from dataclasses import dataclass

from backends.base import BudgetExceeded, LayerEstimate
from backends.common import BaseBackend
from backends.options import Budget


@dataclass(frozen=True)
class NetworkEstimate:
    """Per-layer estimates of one batch through every layer, and their totals."""

    backend: str
    layers: tuple[LayerEstimate, ...]

    @property
    def qubits_per_circuit(self) -> int:
        return max(e.qubits_per_circuit for e in self.layers)

    @property
    def circuits(self) -> int:
        return sum(e.circuits for e in self.layers)

    @property
    def pubs(self) -> int:
        return sum(e.pubs for e in self.layers)

    @property
    def jobs(self) -> int:
        return sum(e.jobs for e in self.layers)

    @property
    def shots(self) -> int:
        return sum(e.shots for e in self.layers)

    @property
    def cost_usd(self) -> float | None:
        costs = [e.cost_usd for e in self.layers]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    @property
    def price_note(self) -> str:
        return self.layers[0].price_note if self.layers else ""


def estimate_network(sizes: list[int], steps: int, batch: int, backend: BaseBackend, shots: int = 1) -> NetworkEstimate:
    """Resources of running ``batch`` samples of ``steps`` steps through a network of layer ``sizes``
    (``[inputs, hidden..., outputs]``) on ``backend`` with ``shots`` per sample."""
    if len(sizes) < 2 or min(sizes) < 1 or steps < 1 or batch < 1 or shots < 1:
        raise ValueError(f"need >= 2 positive sizes and positive steps/batch/shots, got {sizes}, {steps}, {batch}")
    layers = tuple(backend.estimate(n, steps, batch, shots) for n in sizes[1:])
    return NetworkEstimate(backend.name, layers)


def enforce_budget(estimate: NetworkEstimate, budget: Budget) -> None:
    """Raise :class:`BudgetExceeded` naming the limit the estimate breaks."""
    if budget.max_shots is not None and estimate.shots > budget.max_shots:
        raise BudgetExceeded(f"estimated {estimate.shots} shots exceed the budget max_shots={budget.max_shots}")
    if budget.max_cost_usd is not None:
        cost = estimate.cost_usd
        if cost is None:
            raise BudgetExceeded(
                f"{estimate.backend} has no public price, so max_cost_usd={budget.max_cost_usd} cannot be "
                "checked; remove max_cost_usd or use max_shots"
            )
        if cost > budget.max_cost_usd:
            raise BudgetExceeded(
                f"estimated cost ${cost:.2f} exceeds the budget max_cost_usd={budget.max_cost_usd} "
                f"({estimate.price_note})"
            )
