"""Braket: local simulators against the engine oracle, device limits read from properties, prices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from test_backends_reference import chi_square_pvalue, train_index

from backends.base import BackendRefused
from backends.braket import BraketBackend, task_groups
from backends.braket_device import in_execution_window
from backends.braket_sdk import import_braket_sdk
from backends.compiler import compile_layer
from backends.options import BraketOptions
from backends.qasm import simulator_qasm
from sqsnn.neuron import SQSParams, spike_train_distribution

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
GARNET = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"


def oracle(z: np.ndarray, ang: np.ndarray) -> np.ndarray:
    params = SQSParams(*(torch.tensor(a) for a in ang))
    return spike_train_distribution(torch.tensor(z), params, "quantum").numpy()


@pytest.mark.parametrize("layout", ["mid-circuit", "deferred"])
def test_braket_local_sv_joint_distribution_matches_engine(layout: str) -> None:
    # The Braket local simulator takes no seed (each run draws a fresh default_rng), so no seed can fix the
    # draw. Under a correct backend the p-values are uniform (600 p-values of this very check: 5.0 % below
    # 0.05, none below 1e-3); the threshold is Bonferroni-set so that both checks together raise a false
    # alarm with probability 2e-5, while a wrong angle or bit order gives p ~ 0 at 2000 shots.
    rng = np.random.default_rng(8)
    T, n = 4, 2
    z = rng.uniform(-0.5, 1.0, size=(T, 1, n))
    ang = rng.uniform(0, 2 * np.pi, size=(3, n))
    be = BraketBackend("sv", local=True, options=BraketOptions(layout=layout))  # type: ignore[arg-type]
    res = be.run_layer(z, ang, shots=2000)
    ref = oracle(z[:, 0], ang)
    idx = train_index(res.spikes[:, 0])
    for k in range(n):
        assert chi_square_pvalue(idx[:, k], ref[:, k]) > 1e-5
    assert res.jobs == 1 and res.qubits_per_circuit == (4 if layout == "mid-circuit" else 10)


def test_braket_local_batch_decodes_known_spikes_and_simulator_qasm_runs() -> None:
    import_braket_sdk()
    from braket.devices import LocalSimulator
    from braket.ir.openqasm import Program

    rng = np.random.default_rng(2)
    T, B, n = 3, 5, 3
    z = rng.integers(0, 2, size=(T, B, n)).astype(float)
    ang = np.zeros((3, n))
    res = BraketBackend("dm", local=True).run_layer(z, ang)
    np.testing.assert_array_equal(res.single_shot, z)
    assert res.jobs == 1  # 2 chunks (2 + 1 neurons) x 5 samples = 10 executables in one program set
    # qasm3.dumps(includes=[]) form on the Braket simulator: same deterministic spikes
    text = simulator_qasm(compile_layer(n, T), z[:, :1], ang)
    bits = LocalSimulator("braket_sv").run(Program(source=text), shots=1).result().measurements[0]
    np.testing.assert_array_equal(bits.reshape(T, n), z[:, 0])


def qpu_properties(*, min_shots: int = 10, qubits: int = 20, ops: list[str] | None = None) -> dict[str, Any]:
    return {
        "action": {
            "braket.ir.openqasm.program": {
                "supportedOperations": ops if ops is not None else ["rx", "rz", "h", "cnot", "cz", "prx"]
            }
        },
        "paradigm": {"qubitCount": qubits},
        "service": {
            "shotsRange": [min_shots, 20000],
            "executionWindows": [
                {"executionDay": "Everyday", "windowStartHour": "00:00:00", "windowEndHour": "23:59:59"}
            ],
        },
    }


def qpu(props: dict[str, Any], **options: Any) -> BraketBackend:
    device = SimpleNamespace(properties=props, status="ONLINE")
    return BraketBackend(GARNET, local=False, options=BraketOptions(**options), device=device)


def test_qpu_limits_are_checked_and_named_before_submission() -> None:
    z, ang = np.zeros((3, 2, 2)), np.zeros((3, 2))
    with pytest.raises(BackendRefused, match="shots per task 1 is below the device minimum 10"):
        qpu(qpu_properties()).submit(z, ang, shots=1)
    with pytest.raises(BackendRefused, match="qubit count 8 per circuit exceeds the device's 6"):
        qpu(qpu_properties(min_shots=1, qubits=6)).submit(z, ang)  # deferred: 2 x (3 + 1) qubits
    with pytest.raises(BackendRefused, match="lacks readable mid-circuit measurement and reset"):
        qpu(qpu_properties(min_shots=1), layout="mid-circuit").submit(z, ang)
    with pytest.raises(BackendRefused, match="gate set lacks"):
        qpu(qpu_properties(ops=["rx", "cz"])).submit(z, ang, shots=10)
    no_qasm = qpu_properties()
    no_qasm["action"] = {}
    with pytest.raises(BackendRefused, match="OpenQASM"):
        qpu(no_qasm).capabilities()
    assert qpu(qpu_properties()).layout == "deferred" and qpu(qpu_properties()).availability().available


def test_execution_windows() -> None:
    weekdays = [{"executionDay": "Weekdays", "windowStartHour": "09:00:00", "windowEndHour": "17:00:00"}]
    assert in_execution_window(weekdays, datetime(2026, 11, 26, 10, tzinfo=UTC))  # Thursday
    assert not in_execution_window(weekdays, datetime(2026, 11, 26, 18, tzinfo=UTC))
    assert not in_execution_window(weekdays, datetime(2026, 11, 28, 10, tzinfo=UTC))  # Saturday
    overnight = [{"executionDay": "Everyday", "windowStartHour": "22:00:00", "windowEndHour": "02:00:00"}]
    assert in_execution_window(overnight, datetime(2026, 11, 28, 1, tzinfo=UTC))


def test_qpu_cost_estimate_uses_dated_prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    be = qpu(qpu_properties())
    est = be.estimate(neurons=5, steps=4, batch=8, shots=100)
    # 5 neurons in chunks of 2 -> 3 circuits; one task per sample and chunk
    assert (est.circuits, est.pubs, est.jobs, est.shots) == (3, 24, 24, 2400)
    assert est.qubits_per_circuit == 2 * (4 + 1)
    assert est.cost_usd == pytest.approx(24 * 0.30 + 2400 * 0.00145)
    prices = tmp_path / "prices.toml"
    prices.write_text(f'as_of = "2030-01-01"\nper_task = 1.0\n[per_shot]\n"{GARNET}" = 0.01\n')
    monkeypatch.setenv("SQSNN_BRAKET_PRICES", str(prices))
    est = be.estimate(neurons=5, steps=4, batch=8, shots=100)
    assert est.cost_usd == pytest.approx(24 * 1.0 + 2400 * 0.01) and "2030-01-01" in est.price_note


def test_program_set_limits_group_executables_into_tasks() -> None:
    props = qpu_properties()
    props["action"]["braket.ir.openqasm.program_set"] = {"maximumExecutables": 10, "maximumTotalShots": 1000}
    be = qpu(props)
    # 3 chunks x 8 samples = 24 executables; at 100 shots each, 1000 shots allow 10 a task -> 3 tasks
    est = be.estimate(neurons=5, steps=4, batch=8, shots=100)
    assert (est.circuits, est.pubs, est.jobs, est.shots) == (3, 3, 3, 2400)
    assert est.cost_usd == pytest.approx(3 * 0.30 + 2400 * 0.00145)
    assert be.estimate(neurons=5, steps=4, batch=8, shots=300).pubs == 8  # 3 executables of 300 shots a task
    assert task_groups(24, 10) == [range(0, 10), range(10, 20), range(20, 24)]
    with pytest.raises(BackendRefused, match="exceed the device's program-set maximum of 1000 shots"):
        be.estimate(neurons=5, steps=4, batch=8, shots=1001)
