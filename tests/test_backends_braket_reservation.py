"""Braket Direct reservations: ``reservation_arn`` (``braket:<device ARN>`` only) is sent with every task the
backend creates, as the ``RESERVATION_TIME_WINDOW_ARN`` association of ``CreateQuantumTask`` (what the SDK's
``AwsDevice.run`` / ``run_batch(..., reservation_arn=...)`` send), checked on the requests the Braket twin
received; a malformed ARN and a reservation on a local simulator are refused naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from backends.braket import BraketBackend
from backends.options import BraketDeviceOptions
from backends.registry import get_backend
from tests.twins.braket import QPU_ARN, BraketTwin, qpu_capabilities
from tests.twins.braket_plugin import BUCKET

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

RESERVATION = "arn:aws:braket:us-east-1:123456789012:reservation/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
OPTIONS = {"s3_bucket": BUCKET, "poll_interval_s": 0.05}


def _spikes() -> tuple[np.ndarray, np.ndarray]:
    """Currents 0/1 (T=3, B=5, n=3) and zero angles: every neuron spikes exactly when its current is 1."""
    z = np.random.default_rng(4).integers(0, 2, size=(3, 5, 3)).astype(float)
    return z, np.zeros((3, 3))


@pytest.mark.parametrize("program_sets", [True, False], ids=["program-sets", "task-per-executable"])
def test_every_created_task_carries_the_reservation(braket_twin: BraketTwin, program_sets: bool) -> None:
    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(max_executables=4, program_sets=program_sets)
    z, ang = _spikes()
    backend = get_backend(f"braket:{QPU_ARN}", {**OPTIONS, "reservation_arn": RESERVATION})
    result = backend.run_layer(z, ang)
    np.testing.assert_array_equal(result.single_shot, z)
    tasks = list(braket_twin.tasks.values())
    assert len(tasks) == result.jobs == (3 if program_sets else 10)
    association = {"arn": RESERVATION, "type": "RESERVATION_TIME_WINDOW_ARN"}
    assert all(task.associations == [association] for task in tasks)
    described = backend.device().aws_session.get_quantum_task(tasks[0].arn)  # GetQuantumTask reports it too
    assert described["associations"] == [association]


def test_without_a_reservation_tasks_have_no_association(braket_twin: BraketTwin) -> None:
    z, ang = _spikes()
    get_backend(f"braket:{QPU_ARN}", OPTIONS).run_layer(z, ang)
    assert braket_twin.tasks and all(task.associations == [] for task in braket_twin.tasks.values())


@pytest.mark.parametrize(
    "arn",
    [
        "r-1234",
        "arn:aws:braket:us-east-1:123456789012:quantum-task/0b1c2d3e",  # a task, not a reservation
        "arn:aws:braket:us-east-1:1234:reservation/0b1c2d3e",  # the account id has 12 digits
    ],
)
def test_a_malformed_reservation_arn_is_refused_naming_the_field(arn: str) -> None:
    with pytest.raises(ValidationError, match="reservation_arn"):
        BraketDeviceOptions(reservation_arn=arn)


def test_a_reservation_on_a_local_simulator_is_refused() -> None:
    with pytest.raises(ValidationError, match="reservation_arn"):  # braket-local takes the simulator options
        get_backend("braket-local:sv", {"reservation_arn": RESERVATION})
    with pytest.raises(ValueError, match="reservation_arn applies to braket:<device ARN> only"):
        BraketBackend("sv", local=True, options=BraketDeviceOptions(reservation_arn=RESERVATION))
