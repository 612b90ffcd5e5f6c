"""Option models of the backends and of a run (pydantic v2; unknown keys are rejected)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from backends.base import FallbackPolicy


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExactOptions(_Strict):
    """The in-process engine (``sqsnn.neuron.sqs_layer``)."""

    dtype: Literal["float64", "float32"] = "float64"


class AerOptions(_Strict):
    """Aer (ideal or noisy). ``matrix_product_state`` scales to wide packed circuits (neuron pairs are
    never entangled with each other); ``statevector`` is exact too but limited to ~20 qubits."""

    method: Literal["matrix_product_state", "statevector"] = "matrix_product_state"
    neurons_per_circuit: int = Field(32, ge=1, le=500)
    layout: Literal["mid-circuit", "deferred"] = "mid-circuit"
    choose_layout: bool = Field(True, description="noisy only: place neurons by calibration error rates")


class IBMOptions(_Strict):
    """IBM Runtime (``ibm:``) and its local testing mode (``ibm-local:``)."""

    neurons_per_circuit: int = Field(20, ge=1, le=100)
    optimization_level: int = Field(1, ge=0, le=3)
    choose_layout: bool = True
    noise: bool = Field(True, description="ibm-local only: False simulates the ISA circuit without noise")
    max_time: int | None = Field(None, ge=1, description="Batch max_time in seconds")
    job_tags: tuple[str, ...] = ()


class BraketOptions(_Strict):
    """Braket (``braket-local:sv|dm``, ``braket:<arn>``). Local MCM simulation scales badly: keep few
    neurons per program. ``auto`` uses the mid-circuit layout locally and the deferred one on QPUs (no
    Braket QPU returns mid-circuit results)."""

    neurons_per_circuit: int = Field(2, ge=1, le=50)
    layout: Literal["auto", "mid-circuit", "deferred"] = "auto"
    s3_bucket: str | None = None
    s3_prefix: str = "sqsnn"
    poll_timeout_s: float = Field(5 * 24 * 3600, gt=0)


class Budget(_Strict):
    """Limits enforced on the estimate before anything is submitted (None = unlimited)."""

    max_shots: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, ge=0)


class RunPolicy(_Strict):
    """Per-job policy: what to do when the requested backend is unavailable, and the budget."""

    fallback: FallbackPolicy = "none"
    budget: Budget = Budget()
