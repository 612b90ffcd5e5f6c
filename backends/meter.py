"""Count the shots, submissions, tasks and estimated cost of a long run, and enforce its budget before every
submission (hardware-in-the-loop training submits thousands of small jobs, each priced by the backend's
:meth:`~backends.common.BaseBackend.estimate`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from backends.base import BudgetExceeded, LayerEstimate
from backends.options import Budget


@dataclass(frozen=True)
class Spend:
    """What was submitted: ``submissions`` (provider jobs started by one call each), ``tasks`` (PUBs / Braket
    tasks), ``shots`` (over all tasks) and ``cost_usd`` (None once any submission had no public price)."""

    submissions: int = 0
    tasks: int = 0
    shots: int = 0
    cost_usd: float | None = 0.0

    def add(self, other: Spend) -> Spend:
        """The sum of two spends."""
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Spend(self.submissions + other.submissions, self.tasks + other.tasks, self.shots + other.shots, cost)

    def plus(self, estimate: LayerEstimate) -> Spend:
        """This spend after one more submission priced by ``estimate``."""
        return self.add(Spend(1, estimate.pubs, estimate.shots, estimate.cost_usd))

    def minus(self, earlier: Spend) -> Spend:
        """The spend since ``earlier`` (a previous reading of the same meter)."""
        cost = None if self.cost_usd is None or earlier.cost_usd is None else self.cost_usd - earlier.cost_usd
        return Spend(
            self.submissions - earlier.submissions, self.tasks - earlier.tasks, self.shots - earlier.shots, cost
        )


@dataclass
class SpendMeter:
    """Running :class:`Spend` of one run against ``budget``; ``spent`` may start from an earlier attempt's."""

    budget: Budget = field(default_factory=Budget)
    spent: Spend = field(default_factory=Spend)

    def charge(self, estimate: LayerEstimate, what: str) -> None:
        """Add one submission priced by ``estimate``, or raise :class:`BudgetExceeded` (naming the limit, the
        spend so far and ``what`` was about to be submitted) without adding it."""
        after = self.spent.plus(estimate)
        limit = self.budget.max_shots
        if limit is not None and after.shots > limit:
            raise BudgetExceeded(
                f"budget max_shots={limit} exhausted: {self.spent.shots} shots spent in "
                f"{self.spent.submissions} submissions; the next ({what}) needs {estimate.shots} more"
            )
        cap = self.budget.max_cost_usd
        if cap is not None:
            if after.cost_usd is None:
                raise BudgetExceeded(
                    f"{estimate.backend} has no public price, so max_cost_usd={cap} cannot be checked; "
                    "remove max_cost_usd or use max_shots"
                )
            if after.cost_usd > cap:
                spent = self.spent.cost_usd or 0.0
                raise BudgetExceeded(
                    f"budget max_cost_usd={cap} exhausted: ${spent:.2f} spent in {self.spent.submissions} "
                    f"submissions; the next ({what}) costs ${after.cost_usd - spent:.2f} more ({estimate.price_note})"
                )
        self.spent = after

    def charge_all(self, estimates: Sequence[LayerEstimate], what: str) -> None:
        """Add several submissions made together (e.g. every layer of one network run), or none of them."""
        trial = SpendMeter(self.budget, self.spent)
        for estimate in estimates:
            trial.charge(estimate, what)
        self.spent = trial.spent

    def reading(self) -> Spend:
        """A copy of the spend so far (for per-epoch differences)."""
        return replace(self.spent)
