"""sqsnn.cpu_target: numba compiles the kernels for the host with 512-bit vectors allowed, unless an operator
chose the features."""

from __future__ import annotations

import os
import subprocess
import sys

from sqsnn.cpu_target import wide_vector_features

PROBE = "import sqsnn.kernels, numba; print(numba.config.CPU_FEATURES or '')"


def _features_seen(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_FEATURES"}
    if env_value is not None:
        env["NUMBA_CPU_FEATURES"] = env_value
    run = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return run.stdout.strip()


def test_numba_sees_the_host_features_with_wide_vectors_when_the_cpu_has_avx512() -> None:
    wide = wide_vector_features()
    seen = _features_seen(None)
    if wide is None:  # no AVX-512F: numba keeps its own host detection
        assert seen == ""
    else:
        assert seen == wide and seen.endswith(",-prefer-256-bit") and "+avx512f" in seen.split(",")


def test_an_operators_setting_wins() -> None:
    chosen = wide_vector_features() or ""
    chosen = chosen.removesuffix(",-prefer-256-bit") or "+sse2"
    assert _features_seen(chosen) == chosen
