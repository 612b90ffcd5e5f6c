"""Option models of the backends and of a run (pydantic v2; unknown keys are rejected)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from backends.base import Fallback


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExactOptions(_Strict):
    """The in-process engine (``sqsnn.neuron.sqs_layer``)."""

    dtype: Literal["float64", "float32"] = "float64"


class AerOptions(_Strict):
    """Aer (ideal or noisy). ``matrix_product_state`` scales to wide packed circuits (neuron pairs are
    never entangled with each other); ``statevector`` is exact too but limited to ~20 qubits. ``threads``
    defaults to 1: Aer's OpenMP parallelism over parameter bindings was 20x *slower* on a shared 2-core
    machine (0.7 s vs 15 s for 480 bindings)."""

    method: Literal["matrix_product_state", "statevector"] = "matrix_product_state"
    neurons_per_circuit: Annotated[int, Field(ge=1, le=500)] = 32
    layout: Literal["mid-circuit", "deferred"] = "mid-circuit"
    threads: Annotated[int, Field(ge=0, description="Aer OpenMP threads (0: all cores)")] = 1
    choose_layout: Annotated[bool, Field(description="noisy only: place neurons by calibration error rates")] = True


class IBMOptions(_Strict):
    """IBM Runtime (``ibm:``) and its local testing mode (``ibm-local:``)."""

    neurons_per_circuit: Annotated[int, Field(ge=1, le=100)] = 20
    optimization_level: Annotated[int, Field(ge=0, le=3)] = 1
    choose_layout: bool = True
    noise: Annotated[bool, Field(description="ibm-local only: False simulates the ISA circuit without noise")] = True
    execution_mode: Annotated[
        Literal["session", "batch"],
        Field(
            description="ibm only: one IBM Session (the QPU stays reserved between the dependent layers of a job) "
            "or one Batch (layers queue independently, billed for QPU time only) per sqsnn job"
        ),
    ] = "session"
    max_time: Annotated[int | None, Field(ge=1, description="Session/Batch max_time in seconds")] = None
    job_tags: tuple[str, ...] = ()


class BraketOptions(_Strict):
    """Braket (``braket-local:sv|dm``, ``braket:<arn>``). Local MCM simulation scales badly: keep few
    neurons per program. ``auto`` uses the mid-circuit layout locally and the deferred one on QPUs (no
    Braket QPU returns mid-circuit results). Results go to ``s3://<s3_bucket>/<s3_prefix>/tasks/<task id>/``
    (``s3_bucket`` None: the SDK's ``amazon-braket-<region>-<account>`` bucket, created if missing)."""

    neurons_per_circuit: Annotated[int, Field(ge=1, le=50)] = 2
    layout: Literal["auto", "mid-circuit", "deferred"] = "auto"
    s3_bucket: str | None = None
    s3_prefix: str = "sqsnn"
    poll_interval_s: Annotated[float, Field(gt=0, description="seconds between task status checks")] = 1.0
    poll_timeout_s: Annotated[float, Field(gt=0, description="fetch gives up (retryable) after this many seconds")] = (
        5 * 24 * 3600.0
    )
    max_parallel: Annotated[int, Field(ge=1, le=20, description="tasks created / read at the same time")] = 8


RESERVATION_ARN = r"^arn:aws[a-z-]*:braket:[a-z0-9-]+:[0-9]{12}:reservation/[A-Za-z0-9-]+$"
"""A Braket Direct reservation ARN (``arn:aws:braket:<region>:<account>:reservation/<id>``)."""


class BraketDeviceOptions(BraketOptions):
    """Braket devices (``braket:<device ARN>``): the :class:`BraketOptions` fields and a Braket Direct
    reservation. Tasks created with ``reservation_arn`` carry it as their ``RESERVATION_TIME_WINDOW_ARN``
    association (as the SDK's ``AwsDevice.run(..., reservation_arn=...)`` does) and run in that reserved
    window on the device it was made for."""

    reservation_arn: Annotated[
        str | None, Field(pattern=RESERVATION_ARN, description="Braket Direct reservation ARN of this device")
    ] = None


class Budget(_Strict):
    """Upper bounds on a job's hardware use (None = unlimited): checked against the estimate before anything
    is submitted and charged as submissions go; the job fails rather than exceed them."""

    max_shots: Annotated[int | None, Field(ge=1)] = None
    max_cost_usd: Annotated[float | None, Field(ge=0, strict=True)] = None  # a JSON true is not 1 dollar


class RunPolicy(_Strict):
    """Per-job policy: what to do when the requested backend is unavailable, and the budget."""

    fallback: Fallback = "none"
    budget: Budget = Budget()
