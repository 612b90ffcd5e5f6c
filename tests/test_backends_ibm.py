"""IBM client path in local testing mode, Aer with calibration noise, and calibration-based layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from test_backends_reference import chi_square_pvalue, train_index

from backends.aer import AerBackend, fake_backend, isa_transpile
from backends.base import normalise_state
from backends.compiler import compile_layer
from backends.ibm import IBMRuntimeBackend, provider_error
from backends.options import AerOptions, IBMOptions
from sqsnn.neuron import SQSParams, spike_train_distribution

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def test_ibm_local_ideal_joint_distribution_matches_engine() -> None:
    rng = np.random.default_rng(4)
    T, n, shots = 4, 3, 3000
    z = rng.uniform(-0.5, 1.0, size=(T, 1, n))
    ang = rng.uniform(0, 2 * np.pi, size=(3, n))
    be = IBMRuntimeBackend("fake_kingston", local=True, options=IBMOptions(noise=False))
    job = be.submit(z, ang, shots=shots, seed=77)
    assert job.job_ids and job.calibration is not None
    assert be.poll(job) in ("queued", "running", "done")
    res = be.fetch(job)
    params = SQSParams(*(torch.tensor(a) for a in ang))
    ref = spike_train_distribution(torch.tensor(z[:, 0]), params, "quantum").numpy()
    idx = train_index(res.spikes[:, 0])
    for k in range(n):
        assert chi_square_pvalue(idx[:, k], ref[:, k]) > 1e-3
    snapshot = res.calibration["0:3"]  # type: ignore[index]
    assert snapshot["backend"] == "fake_kingston" and len(snapshot["layout"]) == 2 * n


def test_ibm_local_resubmission_with_same_key_is_deduplicated() -> None:
    be = IBMRuntimeBackend("fake_kingston", local=True, options=IBMOptions(noise=False))
    z, ang = np.full((2, 3, 1), 0.4), np.ones((3, 1))
    first = be.submit(z, ang, idempotency_key="batch-1")
    again = be.submit(z, ang, idempotency_key="batch-1")
    other = be.submit(z, ang, idempotency_key="batch-2")
    assert first.job_ids == again.job_ids != other.job_ids


def test_job_states_are_normalised_from_both_forms() -> None:
    from qiskit.providers import JobStatus

    assert normalise_state(JobStatus.DONE) == "done" and normalise_state("QUEUED") == "queued"
    assert normalise_state("COMPLETED") == "done" and normalise_state("CANCELLED") == "cancelled"
    with pytest.raises(ValueError, match="unknown provider job state"):
        normalise_state("EXPLODED")


def test_layout_from_calibration_avoids_worst_readout_qubit_of_default_layout() -> None:
    device = fake_backend("fake_kingston")
    readout = np.array([device.target["measure"][(q,)].error for q in range(device.num_qubits)])
    for n in (1, 20):
        lc = compile_layer(n, 2)
        _, default = isa_transpile(lc, device, choose_layout=False)
        _, chosen = isa_transpile(lc, device, choose_layout=True)
        default_q, chosen_io = default["layout"], chosen["layout"][1::2]
        worst = max(default_q, key=lambda q: readout[q])
        assert readout[worst] > 0.15  # qubit 1 (n = 1) / 31 (n = 20): 17-30 % readout error
        assert worst not in chosen["layout"]
        assert readout[chosen_io].max() < readout[default["layout"][1::2]].max()
        assert chosen["layout_from_calibration"] and not default["layout_from_calibration"]


def test_aer_noisy_fake_kingston_run_completes_and_noise_sits_on_the_right_qubits() -> None:
    # a neuron that never spikes ideally: every spike is a readout/gate error of its I/O qubit.
    T, B = 2, 1500
    z, ang = np.zeros((T, B, 1)), np.zeros((3, 1))
    device = fake_backend("fake_kingston")
    rates = {}
    for choose in (False, True):
        be = AerBackend("fake_kingston", AerOptions(choose_layout=choose))
        res = be.run_layer(z, ang, seed=5)
        snapshot = res.calibration["0:1"]  # type: ignore[index]
        io = snapshot["layout"][1]
        ro = device.target["measure"][(io,)].error
        k = int(res.single_shot.sum())
        rates[choose] = k / (T * B)
        # the observed flip rate is consistent with the I/O qubit's readout error (plus < 2 % gate error)
        ci = stats.binomtest(k, T * B).proportion_ci(0.999)
        assert ci.low <= ro + 0.02 and ci.high >= ro
    assert rates[True] < rates[False] / 4


def test_ibm_local_noisy_run_keeps_calibration_and_reports_done() -> None:
    be = IBMRuntimeBackend("fake_torino", local=True)
    job = be.submit(np.zeros((2, 300, 2)), np.zeros((3, 2)), seed=3)
    res = be.fetch(job)
    assert res.spikes.shape == (2, 300, 1, 2) and res.jobs == 1 and res.backend == "ibm-local:fake_torino"
    snapshot = res.calibration["0:2"]  # type: ignore[index]
    assert snapshot["layout_from_calibration"] and snapshot["calibrated_at"]
    # ideally silent neurons: the spike rate is the I/O qubits' error level (a few percent at most)
    assert 0 < res.spikes.mean() < 0.1
    assert be.capabilities().noisy and be.estimate(2, 2, 300).cost_usd == 0.0


@pytest.mark.parametrize(
    "status, retryable",
    [(429, True), (500, True), (503, True), (-1, True), (400, False), (404, False), (409, False)],
)
def test_runtime_api_errors_are_classified_by_status(status: int, retryable: bool) -> None:
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMRuntimeError

    try:  # the client re-raises API errors "from None": the status is only on the context
        try:
            raise RequestsApiError("boom", status)
        except RequestsApiError as inner:
            raise IBMRuntimeError(f"Failed to run program: {inner}") from None
    except IBMRuntimeError as exc:
        error = provider_error("ibm:x", "submitting", exc)
    assert error.retryable is retryable and "submitting failed" in str(error)


def test_unauthorised_connection_and_unknown_errors_are_classified() -> None:
    import requests
    from qiskit_ibm_runtime.exceptions import IBMNotAuthorizedError

    unauthorised = provider_error("ibm:x", "polling", IBMNotAuthorizedError("401 Client Error"))
    assert not unauthorised.retryable and "QISKIT_IBM_TOKEN" in str(unauthorised)
    assert provider_error("ibm:x", "polling", requests.ConnectionError("reset")).retryable
    assert not provider_error("ibm:x", "decoding", ValueError("bad result")).retryable


def test_ibm_options_name_the_execution_mode_field() -> None:
    assert IBMOptions().execution_mode == "session"
    with pytest.raises(ValueError, match="execution_mode"):
        IBMOptions.model_validate({"execution_mode": "dedicated"})
