"""Importing the Braket SDK leaves numba's process-wide configuration as it was, so the engine's kernels still
compile and run after a Braket backend was used in the same process (a worker, the test suite)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys, torch, numba
from sqsnn import kernels
kernels.draw_uniforms((2, 1000), torch.Generator().manual_seed(0), torch.float32)  # launches numba's threads
def settings():
    return {name: value for name, value in vars(numba.config).items() if name.isupper()}
before = settings()
if sys.argv[1] == "guarded":
    from backends.braket_sdk import import_braket_sdk
    import_braket_sdk()
else:
    import braket.devices
print("unchanged" if settings() == before else "changed", flush=True)
numba.njit(lambda x: x + 1)(1)  # the first compilation after the import
kernels.draw_uniforms((3, 1000), torch.Generator().manual_seed(0), torch.float64)
print("compiled")
"""


def probe(mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, timeout=300)


def test_the_guarded_import_keeps_numbas_configuration_and_kernels_compile() -> None:
    run = probe("guarded")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["unchanged", "compiled"]


def test_a_plain_import_would_break_the_next_compilation() -> None:
    """The defect the guard exists for, as the installed SDK has it (skipped once an SDK release stops
    rewriting numba's configuration, and the guard can go)."""
    run = probe("plain")
    if run.stdout.startswith("unchanged"):
        pytest.skip("this amazon-braket-default-simulator leaves numba's configuration alone")
    assert run.returncode != 0 and "Cannot set NUMBA_NUM_THREADS" in run.stderr
