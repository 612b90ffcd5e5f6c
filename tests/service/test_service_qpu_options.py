"""Per-job backend options (IBM session vs batch, and any option of the backend's kind) are checked with the
job spec and reach the backend the QPU state machine submits to; not_before needs a time zone."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from backends.options import RunPolicy
from workers.hardware import resolve_backend, runs_on_qpu
from workers.schemas.requests import InferJobSpec
from workers.settings import Settings


def _spec(backend: str, **extra) -> InferJobSpec:
    return InferJobSpec.model_validate(
        {"kind": "infer", "model_id": str(uuid.uuid4()), "backend": backend,
         "inputs": {"source": "dataset", "name": "digits", "stop": 2}, **extra}
    )  # fmt: skip


def test_options_are_checked_by_the_backend_kinds_model() -> None:
    assert _spec("ibm:ibm_torino", options={"execution_mode": "batch"}).options == {"execution_mode": "batch"}
    with pytest.raises(ValidationError, match="options for 'ibm:ibm_torino': execution_mode: Input should be"):
        _spec("ibm:ibm_torino", options={"execution_mode": "dedicated"})
    with pytest.raises(ValidationError, match="options for 'aer': shots_per_layer: Extra inputs"):
        _spec("aer", options={"shots_per_layer": 3})


def test_not_before_needs_a_time_zone() -> None:
    assert _spec("aer", not_before="2030-01-01T00:00:00Z").not_before is not None
    with pytest.raises(ValidationError, match="timezone"):
        _spec("aer", not_before="2030-01-01T00:00:00")


def test_the_state_machine_builds_the_backend_with_the_jobs_options(tmp_path) -> None:
    settings = Settings(environment="test", secret_key="k", home=tmp_path, qpu_backends="ibm-local")  # type: ignore[arg-type]
    assert runs_on_qpu(settings, "ibm-local:fake_kingston") and runs_on_qpu(settings, "braket:arn:x")
    assert not runs_on_qpu(settings, "aer")
    options = {"execution_mode": "batch", "neurons_per_circuit": 3}
    backend, fallback = resolve_backend(settings, "ibm-local:fake_kingston", options, RunPolicy())
    assert fallback is None and backend.options.execution_mode == "batch" and backend.per_circuit == 3
    default, _ = resolve_backend(settings, "ibm-local:fake_kingston", None, RunPolicy())
    assert default is not backend and default.options.execution_mode == "session"
