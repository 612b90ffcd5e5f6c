"""Grid experiments: train every {model x memory mode x training method x dataset x seed} cell of a TOML
configuration within its budgets, record results as CSV, and build a markdown table and PNG figures.

* :func:`run_experiment` — run (or resume) a grid; finished cells recorded in ``cells.csv`` are skipped and
  an interrupted cell continues from its last epoch checkpoint.
* :func:`report` — rebuild ``results.md`` and the figures from the CSV files alone.
* :data:`sqsnn.experiments.cli.experiment_app` — the ``sqsnn experiment`` command group.

The configuration format is documented in :mod:`sqsnn.experiments.config`.
"""

from sqsnn.experiments.config import ExperimentConfig, load_config
from sqsnn.experiments.report import report
from sqsnn.experiments.runner import run_experiment

__all__ = ["ExperimentConfig", "load_config", "report", "run_experiment"]
