"""``braket:<arn>`` through the Braket twin with the real amazon-braket-sdk and boto3: spikes against the
engine oracle, program sets split by the device's limits (task count = estimate), task batches, cancel,
queue position, idempotent re-submission, every scripted fault ending in its documented error, and no secret
or account id in errors, logs or results."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_backends_braket import oracle
from test_backends_reference import chi_square_pvalue, train_index

from backends.base import BackendUnavailable, LayerResult, ProviderError
from backends.braket import BraketBackend
from backends.braket_sdk import import_braket_sdk
from backends.options import BraketOptions
from tests.twins.braket import (
    ACCOUNT_ID,
    DM_ARN,
    QPU_ARN,
    SECRET_ACCESS_KEY,
    SIM_ARN,
    BraketTwin,
    Fault,
    TaskPlan,
    qpu_capabilities,
)
from tests.twins.braket_plugin import BUCKET

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def braket(arn: str = QPU_ARN, **options: object) -> BraketBackend:
    opts = BraketOptions(s3_bucket=BUCKET, poll_interval_s=0.05, **options)  # type: ignore[arg-type]
    return BraketBackend(arn, local=False, options=opts)


def known_spikes(T: int = 3, B: int = 5, n: int = 3, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Currents 0/1 and zero angles: every neuron spikes exactly when its current is 1."""
    z = np.random.default_rng(seed).integers(0, 2, size=(T, B, n)).astype(float)
    return z, np.zeros((3, n))


def assert_clean(text: str) -> None:
    assert SECRET_ACCESS_KEY not in text and ACCOUNT_ID not in text, text


def test_qpu_twin_spike_distribution_matches_engine(braket_twin: BraketTwin) -> None:
    # The twin's draw is seeded (fixed outcome); two checks at p > 1e-5 each pass a correct backend on all but
    # 2e-5 of seeds, while a wrong angle or bit order gives p ~ 0 at 2000 shots.
    rng = np.random.default_rng(8)
    T, n = 3, 2
    z = rng.uniform(-0.5, 1.0, size=(T, 1, n))
    ang = rng.uniform(0, 2 * np.pi, size=(3, n))
    res = braket(QPU_ARN).run_layer(z, ang, shots=2000)
    ref = oracle(z[:, 0], ang)
    idx = train_index(res.spikes[:, 0])
    for k in range(n):
        assert chi_square_pvalue(idx[:, k], ref[:, k]) > 1e-5
    assert (res.jobs, res.circuits, res.qubits_per_circuit) == (1, 1, 2 * (T + 1))
    assert braket_twin.create_calls == 1
    assert res.calibration is not None and res.calibration["calibrated_at"] == "2026-11-01T06:00:00"
    assert "0" in res.calibration["standardized"]["oneQubitProperties"]


def test_sampling_is_seeded_by_the_tasks_content_and_repeat(
    braket_twin: BraketTwin, braket_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh twin with the same seed replays a sequence of submissions shot for shot; a repeated task and a
    twin with another seed draw afresh (spike probabilities 0.2-0.8 over 48 spikes: a chance match of two
    independent draws has probability below 0.68^48 = 1e-8)."""
    rng = np.random.default_rng(3)
    z = rng.uniform(0.2, 0.8, size=(3, 8, 2))
    ang = np.zeros((3, 2))
    first, repeat = (braket(SIM_ARN).run_layer(z, ang).single_shot for _ in range(2))
    assert not np.array_equal(first, repeat)
    draws = []
    for seed in (braket_twin.seed, braket_twin.seed + 1):
        twin = BraketTwin(braket_s3, seed=seed).start()
        for key, value in twin.env().items():
            monkeypatch.setenv(key, value)
        draws.append([braket(SIM_ARN).run_layer(z, ang).single_shot for _ in range(2)])
        twin.stop()
    np.testing.assert_array_equal(draws[0][0], first)
    np.testing.assert_array_equal(draws[0][1], repeat)
    assert not np.array_equal(draws[1][0], first)


@pytest.mark.parametrize("program_sets", [True, False])
def test_task_count_equals_estimate_and_spikes_decode_in_order(
    braket_twin: BraketTwin, program_sets: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(max_executables=4, program_sets=program_sets)
    prices = tmp_path / "prices.toml"
    prices.write_text(f'as_of = "2030-01-01"\nper_task = 0.3\n[per_shot]\n"{QPU_ARN}" = 0.001\n')
    monkeypatch.setenv("SQSNN_BRAKET_PRICES", str(prices))
    z, ang = known_spikes()  # 3 neurons in chunks of 2 + 1, 5 samples: 10 executables
    be = braket(QPU_ARN)
    est = be.estimate(neurons=3, steps=3, batch=5, shots=1)
    tasks = 3 if program_sets else 10  # ceil(10 / 4) program sets, or one task per executable
    assert (est.pubs, est.jobs, est.shots) == (tasks, tasks, 10)
    assert est.cost_usd == pytest.approx(tasks * 0.3 + 10 * 0.001)
    assert "program set is billed as one task" in est.price_note
    res = be.run_layer(z, ang)
    np.testing.assert_array_equal(res.single_shot, z)
    assert braket_twin.create_calls == len(braket_twin.tasks) == res.jobs == tasks


@pytest.mark.parametrize("arn", [SIM_ARN, DM_ARN])
def test_simulator_device_runs_a_batch_as_one_program_set(braket_twin: BraketTwin, arn: str) -> None:
    z, ang = known_spikes(T=2, B=4, n=2)
    res = braket(arn).run_layer(z, ang)
    np.testing.assert_array_equal(res.single_shot, z)
    assert res.jobs == braket_twin.create_calls == 1
    assert res.usage == {"tasks": 1, "executables": 4, "shots": 4}


def test_estimate_of_the_readme_network_is_a_handful_of_tasks(braket_twin: BraketTwin) -> None:
    from backends.estimate import estimate_network

    # 256 images x 784-64-10 at T=5: deferred layout, 6 qubits a neuron; 8 neurons per 48-qubit program.
    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(qubits=48)
    est = estimate_network([784, 64, 10], 5, 256, braket(QPU_ARN, neurons_per_circuit=8))
    # hidden: 8 programs x 256 samples = 2048 executables -> 21 program sets; output: 2 x 256 -> 6
    assert [e.pubs for e in est.layers] == [21, 6] and est.shots == (8 + 2) * 256


def test_cancel_mid_queue_cancels_every_task(braket_twin: BraketTwin) -> None:
    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(max_executables=2)
    braket_twin.hold = True
    be = braket(QPU_ARN)
    job = be.submit(*known_spikes(B=3, n=2))  # 3 executables -> 2 tasks
    braket_twin.wait_for("QUEUED", 2)
    info = be.queue_info(job)
    assert info is not None and info.position == 0 and "position 1" in info.message
    assert be.poll(job) == "queued"
    be.cancel(job)
    assert braket_twin.statuses() == ["CANCELLED", "CANCELLED"]
    assert be.poll(job) == "cancelled" and be.queue_info(job) is None
    with pytest.raises(ProviderError, match="CANCELLED") as err:
        be.fetch(job)
    assert not err.value.retryable
    be.cancel(job)  # cancelling ended tasks again is harmless


def test_resubmission_with_the_same_key_creates_no_new_task(braket_twin: BraketTwin) -> None:
    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(max_executables=2)
    z, ang = known_spikes(B=3, n=2)
    first = braket(QPU_ARN).submit(z, ang, idempotency_key="job-7/layer-0")
    again = braket(QPU_ARN).submit(z, ang, idempotency_key="job-7/layer-0")  # e.g. a retried worker
    assert again.job_ids == first.job_ids and len(braket_twin.tasks) == 2
    other = braket(QPU_ARN).submit(z, ang, idempotency_key="job-8/layer-0")
    assert len(braket_twin.tasks) == 4 and not set(other.job_ids) & set(first.job_ids)
    np.testing.assert_array_equal(braket(QPU_ARN).fetch(again).single_shot, z)


@pytest.mark.parametrize(
    ("kind", "retryable", "message"),
    [
        ("throttle", True, "ThrottlingException"),
        ("server_error", True, "InternalServiceException"),
        ("drop", True, "ConnectionClosedError"),
        ("bad_credentials", False, "UnrecognizedClientException"),
        ("expired_credentials", False, "ExpiredTokenException"),
    ],
)
def test_create_faults_end_in_documented_errors(
    braket_twin: BraketTwin, kind: str, retryable: bool, message: str
) -> None:
    be = braket(QPU_ARN)
    be.capabilities()  # device read before the fault
    braket_twin.faults.append(Fault("CreateQuantumTask", kind, times=5))  # type: ignore[arg-type]
    with pytest.raises(ProviderError, match=message) as err:
        be.submit(*known_spikes(B=1, n=2))
    assert err.value.retryable is retryable
    assert not braket_twin.tasks


def test_wrong_access_key_is_refused_as_final(braket_twin: BraketTwin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY00000000")
    be = braket(QPU_ARN)
    with pytest.raises(ProviderError, match=r"UnrecognizedClientException.*configure AWS credentials") as err:
        be.submit(*known_spikes(B=1, n=2))
    assert not err.value.retryable
    assert not be.availability().available


def test_throttled_polling_is_retryable_and_loses_nothing(braket_twin: BraketTwin) -> None:
    be = braket(QPU_ARN)
    z, ang = known_spikes(B=2, n=2)
    job = be.submit(z, ang)
    # AwsSession.get_quantum_task backs off 3 times on throttling, each a call of 2 botocore attempts
    braket_twin.faults.append(Fault("GetQuantumTask", "throttle", times=6))
    with pytest.raises(ProviderError, match="ThrottlingException") as err:
        be.fetch(job)
    assert err.value.retryable
    np.testing.assert_array_equal(be.fetch(job).single_shot, z)
    assert braket_twin.create_calls == 1


@pytest.mark.parametrize(
    ("plan", "state", "message"),
    [
        (TaskPlan("failed", "Device calibration drifted"), "failed", "FAILED: Device calibration drifted"),
        (TaskPlan("cancelled"), "cancelled", "was CANCELLED"),
    ],
)
def test_task_outcomes_are_final(braket_twin: BraketTwin, plan: TaskPlan, state: str, message: str) -> None:
    braket_twin.plan(plan)
    be = braket(QPU_ARN)
    job = be.submit(*known_spikes(B=1, n=2))
    with pytest.raises(ProviderError, match=message) as err:
        be.fetch(job)
    assert not err.value.retryable and be.poll(job) == state
    assert_clean(str(err.value))


def test_result_missing_from_s3_is_retryable_until_stored(braket_twin: BraketTwin) -> None:
    braket_twin.plan(TaskPlan("result_missing"))
    be = braket(QPU_ARN)
    z, ang = known_spikes(B=1, n=2)
    job = be.submit(z, ang)
    with pytest.raises(ProviderError, match="NoSuchKey") as err:
        be.fetch(job)
    assert err.value.retryable and be.poll(job) == "done"
    braket_twin.publish_results()
    np.testing.assert_array_equal(be.fetch(job).single_shot, z)


def test_offline_and_retired_devices(braket_twin: BraketTwin) -> None:
    be = braket(QPU_ARN)
    braket_twin.set_status(QPU_ARN, "OFFLINE")
    availability = be.availability()
    assert not availability.available and "OFFLINE" in availability.reason
    with pytest.raises(BackendUnavailable, match="DeviceOfflineException"):
        be.submit(*known_spikes(B=1, n=2))
    braket_twin.set_status(QPU_ARN, "RETIRED")
    assert "RETIRED" in be.availability().reason
    with pytest.raises(ProviderError, match="DeviceRetiredException") as err:
        be.submit(*known_spikes(B=1, n=2))
    assert not err.value.retryable and not braket_twin.tasks


def test_no_secret_or_account_id_in_errors_logs_or_results(
    braket_twin: BraketTwin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    texts: list[str] = []
    be = braket(QPU_ARN)
    z, ang = known_spikes(B=2, n=2)
    braket_twin.plan(
        TaskPlan("failed", f"role arn:aws:iam::{ACCOUNT_ID}:role/braket denied"), TaskPlan("result_missing")
    )
    for _ in range(2):
        job = be.submit(z, ang)
        assert ACCOUNT_ID in job.job_ids[0]  # kept for sqsnn's own calls
        with pytest.raises(ProviderError) as err:
            be.fetch(job)
        texts.append(str(err.value))
    braket_twin.publish_results()
    result: LayerResult = be.fetch(job)
    braket_twin.hold = True
    queued = be.submit(z, ang)
    info = be.queue_info(queued)
    texts += [repr(result), repr(info), caplog.text]
    braket_twin.faults.append(Fault("GetQuantumTask", "expired_credentials"))
    with pytest.raises(ProviderError) as err:
        be.poll(queued)
    texts.append(str(err.value))
    for text in texts:
        assert_clean(text)
    assert "arn:aws:braket:us-east-1:***:quantum-task/" in result.job_ids[0]


def test_network_by_name_submits_as_many_tasks_as_estimated(braket_twin: BraketTwin) -> None:
    import torch

    from backends.execute import run_network
    from sqsnn.network import NetworkConfig, SQSNetwork

    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(max_executables=4)
    net = SQSNetwork(NetworkConfig(sizes=[6, 4, 3], mode="quantum", seed=3))
    x = torch.from_numpy(np.random.default_rng(5).integers(0, 2, size=(2, 3, 6))).double()
    options = {"s3_bucket": BUCKET, "poll_interval_s": 0.05}
    run = run_network(net, x, f"braket:{QPU_ARN}", options=options, seed=1)
    # each layer: 2 chunks x 3 samples = 6 executables -> 2 program sets of <= 4
    assert [e.pubs for e in run.estimate.layers] == [2, 2] == [layer.jobs for layer in run.layers]
    assert braket_twin.create_calls == run.estimate.pubs == 4
    assert run.backend == f"braket:{QPU_ARN}" and run.fallback is None
    assert [tuple(s.shape) for s in run.spikes] == [(2, 3, 4), (2, 3, 3)] and run.predictions.shape == (3,)


def test_device_search_sees_the_twin_devices_and_their_status(braket_twin: BraketTwin) -> None:
    import_braket_sdk()
    from braket.aws import AwsDevice

    assert {d.arn for d in AwsDevice.get_devices(statuses=["ONLINE"])} == {SIM_ARN, DM_ARN, QPU_ARN}
    braket_twin.set_status(QPU_ARN, "OFFLINE")
    assert {d.arn for d in AwsDevice.get_devices(statuses=["ONLINE"])} == {SIM_ARN, DM_ARN}
    assert [d.name for d in AwsDevice.get_devices(types=["QPU"], statuses=["OFFLINE"])] == ["gate-qpu"]


def test_module_twin_reset_drops_an_earlier_tests_scripting(braket_twin_module: BraketTwin) -> None:
    braket_twin_module.set_status(QPU_ARN, "RETIRED")
    braket_twin_module.faults.append(Fault("CreateQuantumTask", "server_error", times=9))
    braket_twin_module.plan(TaskPlan("failed"))
    braket_twin_module.reset()
    z, ang = known_spikes(B=2, n=2)
    np.testing.assert_array_equal(braket(QPU_ARN).run_layer(z, ang).single_shot, z)


@pytest.mark.parametrize("key", [None, "job-9/layer-1"])
def test_partly_failed_submission_cancels_or_is_adopted_by_the_retry(braket_twin: BraketTwin, key: str | None) -> None:
    braket_twin.devices[QPU_ARN].capabilities = qpu_capabilities(max_executables=2)
    be = braket(QPU_ARN)
    be.capabilities()
    z, ang = known_spikes(B=3, n=2)  # 2 tasks; 3 faults over their 2 x 2 attempts fail exactly one of them
    braket_twin.hold = True
    braket_twin.faults.append(Fault("CreateQuantumTask", "server_error", times=3))
    with pytest.raises(ProviderError, match="InternalServiceException") as err:
        be.submit(z, ang, idempotency_key=key)
    assert err.value.retryable and len(braket_twin.tasks) == 1
    if key is None:  # nothing can adopt the created task: it is cancelled, not left running
        assert braket_twin.statuses() == ["CANCELLED"]
    else:  # the retry with the same key adopts it and creates only the missing one
        job = be.submit(z, ang, idempotency_key=key)
        assert len(braket_twin.tasks) == 2 and set(braket_twin.tasks) == set(job.job_ids)
        braket_twin.release()
        np.testing.assert_array_equal(be.fetch(job).single_shot, z)


def test_queue_delay_keeps_tasks_queued_then_they_complete(braket_twin: BraketTwin) -> None:
    braket_twin.queue_delay_s = 1.0
    be = braket(QPU_ARN)
    z, ang = known_spikes(B=2, n=2)
    job = be.submit(z, ang)
    assert be.poll(job) == "queued"
    info = be.queue_info(job)
    assert info is not None and info.position == 0
    np.testing.assert_array_equal(be.fetch(job).single_shot, z)  # fetch waits out the queue
    assert be.poll(job) == "done" and be.queue_info(job) is None


def test_fetch_gives_up_retryably_when_tasks_outlast_the_poll_timeout(braket_twin: BraketTwin) -> None:
    braket_twin.hold = True
    be = braket(QPU_ARN, poll_timeout_s=0.3)
    z, ang = known_spikes(B=2, n=2)
    job = be.submit(z, ang)
    with pytest.raises(ProviderError, match=r"1 of 1 tasks not finished after 0\.3 s") as err:
        be.fetch(job)
    assert err.value.retryable and braket_twin.statuses() == ["QUEUED"]
    braket_twin.release()
    np.testing.assert_array_equal(be.fetch(job).single_shot, z)


def test_answer_lost_after_the_task_was_created_makes_no_duplicate(braket_twin: BraketTwin) -> None:
    braket_twin.faults.append(Fault("CreateQuantumTask", "drop_after"))  # created, then the answer is lost
    be = braket(QPU_ARN)
    z, ang = known_spikes(B=2, n=2)
    job = be.submit(z, ang)  # boto3 retries with the same clientToken
    assert braket_twin.create_calls == 2 and list(braket_twin.tasks) == job.job_ids
    np.testing.assert_array_equal(be.fetch(job).single_shot, z)
