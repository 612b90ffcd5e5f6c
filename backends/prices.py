"""Dated public QPU prices used by estimates (configuration, not code: override with a TOML file).

Amazon Braket bills every QPU task a fixed fee plus a per-shot fee that depends on the device
(https://aws.amazon.com/braket/pricing/). The defaults below are the on-demand prices the authors read from
that page; ``as_of`` says when. Prices change: point ``SQSNN_BRAKET_PRICES`` at a TOML file with the same
keys (``as_of``, ``per_task``, ``[per_shot]`` keyed by device ARN) to update them without a release.
IBM Quantum bills QPU time, not shots, so no IBM cost is estimated.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    per_task: float  # USD per task
    per_shot: dict[str, float] = field(default_factory=dict)  # USD per shot, by device ARN
    source: str = "https://aws.amazon.com/braket/pricing/"


DEFAULT_BRAKET_PRICES = PriceTable(
    as_of="2025-06-01",
    per_task=0.30,
    per_shot={
        "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1": 0.08,
        "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet": 0.00145,
        "arn:aws:braket:eu-north-1::device/qpu/iqm/Emerald": 0.0016,
        "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-3": 0.0009,
    },
)


def braket_prices() -> PriceTable:
    """The price table in force: ``SQSNN_BRAKET_PRICES`` (TOML) if set, else the dated defaults."""
    path = os.environ.get("SQSNN_BRAKET_PRICES")
    if not path:
        return DEFAULT_BRAKET_PRICES
    data = tomllib.loads(Path(path).read_text())
    try:
        return PriceTable(
            as_of=str(data["as_of"]),
            per_task=float(data["per_task"]),
            per_shot={str(k): float(v) for k, v in data.get("per_shot", {}).items()},
            source=str(data.get("source", path)),
        )
    except KeyError as exc:
        raise ValueError(f"price file {path} lacks key {exc.args[0]!r} (needs as_of, per_task, per_shot)") from None
