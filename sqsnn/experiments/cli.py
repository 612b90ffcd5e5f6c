"""``sqsnn experiment`` commands: ``run CONFIG`` and ``report RESULTS_DIR... [--output FILE] [--figures DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sqsnn.experiments.config import ConfigError
from sqsnn.experiments.report import report as build_report
from sqsnn.experiments.runner import run_experiment

experiment_app = typer.Typer(help="Grid experiments: run a TOML configuration, rebuild its table and figures.")


@experiment_app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="experiment configuration (TOML)")],
    seed: Annotated[
        list[int] | None,
        typer.Option(help="run only the cells of this seed (repeatable): one process per seed runs them in parallel"),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="run only the cells of the model with this label (repeatable), like --seed"),
    ] = None,
) -> None:
    """Run (or resume) every cell of CONFIG; finished cells are skipped."""
    try:
        summary = run_experiment(config, seeds=seed, models=model, log=typer.echo)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG") from exc
    typer.echo(f"ran {len(summary.ran)}, skipped {len(summary.skipped)}, left {len(summary.remaining)}")


@experiment_app.command("report")
def report_command(
    results_dirs: Annotated[
        list[Path], typer.Argument(help="results directories holding cells.csv (several: one combined report)")
    ],
    output: Annotated[
        Path | None, typer.Option(help="markdown file to write (default RESULTS_DIR/results.md; needed with several)")
    ] = None,
    figures: Annotated[
        Path | None, typer.Option(help="folder of the section figures (default: see sqsnn.experiments.report)")
    ] = None,
) -> None:
    """Rebuild the markdown tables and the figures from the CSV files."""
    try:
        path = build_report(results_dirs, output, figures_dir=figures)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="RESULTS_DIRS") from exc
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output") from exc
    typer.echo(f"wrote {path}")
