"""Per-dataset training defaults: the settings ``sqsnn train --dataset NAME`` uses for every flag not given.

Resolution order for each setting: the user's flag, then :data:`DATASET_DEFAULTS` for the dataset, then the
trainer's own default (:class:`sqsnn.training.bptt.TrainConfig`; hidden width :data:`HIDDEN`).
The overrides were chosen on validation splits (the test splits were not looked at):

* ``digits`` — 64-128-10, T = 5, 5 epochs, 3 seeds, validation = 10 % of the training split. Trainer
  defaults (count loss, p_max 0.5, lr 1e-3 with fan-in scaling): 67.4 ± 3.0 %; ``loss = "probs"``:
  72.9 ± 4.2 %; ``loss = "probs", p_max = 1.0``: 90.7 ± 2.0 %. On digits' 8x8 images at p_max 0.5 the
  inputs carry few spikes in T = 5 steps, and the probability loss removes the output sampling noise from
  the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HIDDEN: tuple[int, ...] = (128,)


@dataclass(frozen=True)
class DatasetDefaults:
    """Overrides for one dataset: ``train`` holds :class:`~sqsnn.training.bptt.TrainConfig` fields."""

    hidden: tuple[int, ...] = HIDDEN
    train: dict[str, Any] = field(default_factory=dict)


DATASET_DEFAULTS: dict[str, DatasetDefaults] = {
    "digits": DatasetDefaults(train={"loss": "probs", "p_max": 1.0}),
}


def defaults_for(dataset: str) -> DatasetDefaults:
    """The dataset's overrides (none for a dataset without an entry)."""
    return DATASET_DEFAULTS.get(dataset, DatasetDefaults())
