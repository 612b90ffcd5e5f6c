"""Importing the Braket SDK leaves numba's process-wide configuration as it was, so the engine's kernels still
compile and run after a Braket backend was used in the same process (a worker, the test suite).

The probe imports numba before sqsnn, as a worker does that imports the Braket SDK first: on an AVX-512 host
``sqsnn.cpu_target`` then sets ``NUMBA_CPU_FEATURES`` after numba's import, and numba re-reads its whole
configuration at the next compilation; with the SDK's ``NUMBA_NUM_THREADS = -1`` left in place and numba's
threads running, that compilation raises.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, sys, numba, torch
from backends.braket_sdk import numba_settings as settings  # imports numba only, not the SDK
features = os.environ.get("NUMBA_CPU_FEATURES")
from sqsnn import kernels
kernels.draw_uniforms((2, 1000), torch.Generator().manual_seed(0), torch.float32)  # launches numba's threads
print("environment changed" if os.environ.get("NUMBA_CPU_FEATURES") != features else "environment kept")
before = settings()
if sys.argv[1] == "guarded":
    from backends.braket_sdk import import_braket_sdk
    import_braket_sdk()
else:
    import braket.devices
print("settings kept" if settings() == before else "settings changed")
try:
    numba.njit(lambda x: x + 1)(1)  # the first compilation after the import
    kernels.draw_uniforms((3, 1000), torch.Generator().manual_seed(0), torch.float64)
    print("compiled")
except RuntimeError as exc:
    print("failed:", exc)
"""


def probe(mode: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_FEATURES"}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env={**env, "NUMBA_NUM_THREADS": "2"}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip().split("\n")


def test_the_guarded_import_keeps_numbas_configuration_and_kernels_compile() -> None:
    assert probe("guarded")[1:] == ["settings kept", "compiled"]


def test_a_plain_import_rewrites_numbas_configuration() -> None:
    """The defect the guard exists for, as the installed SDK has it (skipped once an SDK release stops
    rewriting numba's configuration, and the guard can go)."""
    environment, settings, compiled = probe("plain")
    if settings == "settings kept":
        pytest.skip("this amazon-braket-default-simulator leaves numba's configuration alone")
    if environment == "environment changed":  # numba re-reads its configuration at the next compilation
        assert compiled.startswith("failed: Cannot set NUMBA_NUM_THREADS")
    else:
        assert compiled == "compiled"
