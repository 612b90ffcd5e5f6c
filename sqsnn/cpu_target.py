"""The CPU target numba compiles the kernels for: the host's, with LLVM allowed to use 512-bit vectors.

LLVM tunes AVX-512 server CPUs to prefer 256-bit vectors (clock-frequency caution), so numba's kernels ran at
half the SIMD width the machine has. On the AVX-512 machine of issue 13's second session, 512-bit vectors made
the neuron kernels ~20 % faster (5 x 256 x 1000, float64: forward 2.22 -> 1.82 ms, backward 4.37 -> 3.43 ms;
float32 backward 2.23 -> 1.87 ms), while MKL's dense products use 512-bit vectors anyway.

Importing this module sets ``NUMBA_CPU_FEATURES`` to the host's features plus ``-prefer-256-bit`` when the host
has AVX-512F and the variable is not set already (an operator's setting wins). numba reads it once, when it is
first imported, so :mod:`sqsnn.kernels` imports this module first; numba's cache keys on the features, so
kernels compiled for other settings are not reused by mistake.
"""

from __future__ import annotations

import os

FEATURES_VARIABLE = "NUMBA_CPU_FEATURES"


def wide_vector_features() -> str | None:
    """The host's LLVM feature string with ``-prefer-256-bit`` added, or None when the host has no AVX-512F."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten()
    return f"{features},-prefer-256-bit" if "+avx512f" in features.split(",") else None


if FEATURES_VARIABLE not in os.environ and (wide := wide_vector_features()) is not None:
    os.environ[FEATURES_VARIABLE] = wide
