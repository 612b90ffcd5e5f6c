"""The ``sqsnn`` science commands as a terminal shows them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqsnn.datasets import list_datasets

ROOT = Path(__file__).resolve().parents[1]


def test_datasets_fits_80_columns_and_abbreviates_nothing() -> None:
    env = {**os.environ, "COLUMNS": "80", "SQSNN_NO_PLUGINS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "sqsnn.cli", "datasets"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "…" not in out.stdout
    words = " ".join(out.stdout.split())
    for info in list_datasets():
        # one summary row and one description per dataset, each starting with the full name
        assert sum(line.startswith(f"{info.name} ") for line in lines) == 2, info.name
        assert " ".join(info.source.split()) in words, info.name
        assert all(option in words for option in info.options), info.name
