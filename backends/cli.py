"""``sqsnn estimate``: resources and cost of a network run before submitting it.

Mount with ``app.command("estimate")(estimate_command)`` on the ``sqsnn`` typer app.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from backends.base import BudgetExceeded
from backends.estimate import enforce_budget, estimate_network
from backends.options import Budget
from backends.registry import get_backend


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--sizes must be comma-separated integers like 784,64,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise typer.BadParameter("--sizes needs an input size and at least one layer, all >= 1")
    return sizes


def estimate_command(
    backend: Annotated[
        str,
        typer.Option(help="exact, aer, aer-noisy:<fake>, ibm:<b>, ibm-local:<fake>, braket-local:sv|dm, braket:<arn>"),
    ] = "aer",
    sizes: Annotated[str, typer.Option(help="layer sizes, e.g. 784,64,10")] = "784,64,10",
    steps: Annotated[int, typer.Option("--T", min=1, help="time steps per sample")] = 5,
    batch: Annotated[int, typer.Option(min=1, help="samples")] = 256,
    shots: Annotated[int, typer.Option(min=1, help="shots per sample")] = 1,
    neurons_per_circuit: Annotated[int | None, typer.Option(min=1, help="neurons packed per circuit")] = None,
    max_shots: Annotated[int | None, typer.Option(min=1, help="budget: maximum total shots")] = None,
    max_cost: Annotated[float | None, typer.Option(min=0, help="budget: maximum cost in USD")] = None,
) -> None:
    """Print qubits, circuits, PUBs/tasks, shots, jobs and cost per layer; exit 1 if over budget."""
    options = {"neurons_per_circuit": neurons_per_circuit} if neurons_per_circuit else None
    try:
        be = get_backend(backend, options)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--backend") from None
    est = estimate_network(parse_sizes(sizes), steps, batch, be, shots)
    table = Table(title=f"{be.name}: {sizes}, T={steps}, batch={batch}, shots/sample={shots}")
    for col in ("layer", "neurons", "qubits/circuit", "circuits", "PUBs/tasks", "jobs", "shots", "cost USD"):
        table.add_column(col, justify="right")
    rows = [(str(i + 1), e) for i, e in enumerate(est.layers)]
    for label, e in rows:
        cost = "n/a" if e.cost_usd is None else f"{e.cost_usd:.2f}"
        table.add_row(
            label,
            str(e.neurons),
            str(e.qubits_per_circuit),
            str(e.circuits),
            str(e.pubs),
            str(e.jobs),
            str(e.shots),
            cost,
        )
    total_cost = "n/a" if est.cost_usd is None else f"{est.cost_usd:.2f}"
    table.add_row(
        "total",
        "",
        str(est.qubits_per_circuit),
        str(est.circuits),
        str(est.pubs),
        str(est.jobs),
        str(est.shots),
        total_cost,
    )
    console = Console()
    console.print(table)
    console.print(f"price: {est.price_note}")
    try:
        enforce_budget(est, Budget(max_shots=max_shots, max_cost_usd=max_cost))
    except BudgetExceeded as exc:
        console.print(f"[red]over budget:[/red] {exc}")
        raise typer.Exit(1) from None
