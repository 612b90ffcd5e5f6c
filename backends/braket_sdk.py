"""Importing the Braket SDK without its side effect on numba.

Nearly every module of the Braket SDK (``braket.aws``, ``braket.devices``, ``braket.circuits``,
``braket.program_sets``) imports ``braket.default_simulator``, whose ``linalg_utils`` rewrites numba's
process-wide configuration on import (amazon-braket-default-simulator 1.40-1.41: threading layer
``workqueue``, ``NUMBA_NUM_THREADS = -1``, ``NUMBA_CPU_NAME = "native"``, ``NUMBA_OPT = 3`` and more). In a
process that also runs the engine's kernels (a worker, the test suite) those settings stay in force: kernels
first launched after the import run on the workqueue layer, which is not thread-safe, and when a ``NUMBA_``
environment variable changed after numba's import (``sqsnn.cpu_target`` sets ``NUMBA_CPU_FEATURES`` on
AVX-512 hosts, where numba was imported before sqsnn), the next compilation re-reads the configuration and
fails with "Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched".
"""

from __future__ import annotations

import functools
from typing import Any

import numba


def numba_settings() -> dict[str, Any]:
    """numba's process-wide configuration: the upper-case attributes of ``numba.config`` by name."""
    return {name: value for name, value in vars(numba.config).items() if name.isupper()}


@functools.cache
def import_braket_sdk() -> None:
    """Import the Braket SDK (once per process) and put numba's settings back as they were (changed ones
    restored, added ones removed); call it before any ``from braket... import``. Braket's own numba
    functions then compile under the process's settings, with the same results."""
    before = numba_settings()
    import braket.devices  # noqa: F401  (pulls in braket.default_simulator)

    after = numba_settings()
    for name in after.keys() - before.keys():
        delattr(numba.config, name)
    for name, value in before.items():
        if after.get(name) != value:
            setattr(numba.config, name, value)
