"""numba's parallel kernels and torch share one OpenMP runtime: calling a kernel must leave torch's thread
count as the caller set it (else a seeded run depends on ``NUMBA_NUM_THREADS``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
import numba
from sqsnn import kernels
kernels.draw_uniforms((2, 1000), torch.Generator().manual_seed(0), torch.float32)
print(torch.get_num_threads(), numba.get_num_threads())
"""


@pytest.mark.parametrize(("torch_threads", "numba_max", "expected"), [(1, 2, "1 1"), (2, 1, "2 1"), (2, 2, "2 2")])
def test_a_kernel_call_keeps_torchs_thread_count_and_runs_numba_on_as_many(
    torch_threads: int, numba_max: int, expected: str
) -> None:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(numba_max), "NUMBA_THREADING_LAYER": "omp"}
    env.pop("OMP_NUM_THREADS", None)
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(torch_threads)], env=env, capture_output=True, text=True, check=True
    )
    assert run.stdout.split("\n")[-2] == expected
