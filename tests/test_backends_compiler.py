"""Compiler and decoder: circuits with known outcomes, exact distributions of the deferred layout, and
Aer sampling of both layouts against the engine's exact joint spike-train distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit import qasm3
from qiskit.primitives import BitArray
from qiskit.quantum_info import Statevector
from test_backends_reference import chi_square_pvalue, joint_distribution, train_index

from backends.aer import AerBackend
from backends.compiler import bind_matrix, compile_layer, decode_spikes, unpack_bits
from backends.options import AerOptions
from backends.qasm import simulator_qasm
from sqsnn.neuron import SQSParams, spike_train_distribution


def oracle(z: np.ndarray, ang: np.ndarray, mode: str = "quantum") -> np.ndarray:
    """Engine oracle (2**T, n) for currents z (T, n)."""
    params = SQSParams(*(torch.tensor(a) for a in ang))
    return spike_train_distribution(torch.tensor(z), params, mode).numpy()  # type: ignore[arg-type]


def test_circuit_structure_and_parameters() -> None:
    lc = compile_layer(3, 4)
    ops = lc.circuit.count_ops()
    assert lc.num_qubits == 6 and lc.num_bits == 12 and len(lc.circuit.cregs) == 1
    assert ops["measure"] == 12 and ops["reset"] == 9 and ops["crx"] == 12 and ops["rx"] == 36
    assert lc.circuit.num_parameters == 12 + 9
    deferred = compile_layer(3, 4, layout="deferred")
    assert deferred.num_qubits == 15 and "reset" not in deferred.circuit.count_ops()
    # z <= 0 binds angle 0; columns follow the circuit's parameter order
    z = np.array([[[-1.0, 0.5, 0.0]]] * 4)
    vals = bind_matrix(lc, lc.circuit, z, np.arange(9.0).reshape(3, 3))
    bound = dict(zip(lc.circuit.parameters, vals[0], strict=True))
    assert bound[lc.phi[0]] == 0.0 and bound[lc.phi[1]] == pytest.approx(np.pi / 2)
    assert [bound[lc.theta[i]] for i in range(3)] == [0.0, 3.0, 6.0]  # neuron 0: ent, mem, in


def test_decode_bitarray_known_strings() -> None:
    # n = 2 neurons, T = 3 steps; bit t*n + k; bitstrings print bit 0 rightmost
    n, T = 2, 3
    spikes = np.array([[[1, 0], [0, 1], [1, 1]], [[0, 0], [1, 0], [0, 1]]])  # (B=2, T, n)
    strings = []
    for b in range(2):
        bits = ["0"] * (n * T)
        for t in range(T):
            for k in range(n):
                bits[t * n + k] = str(spikes[b, t, k])
        strings.append("".join(reversed(bits)))
    ba = BitArray.from_samples(strings, num_bits=n * T)
    decoded = decode_spikes(unpack_bits(ba.array, ba.num_bits), n, T)  # (T, B, n)
    np.testing.assert_array_equal(decoded, spikes.transpose(1, 0, 2))


@pytest.mark.parametrize("per_circuit", [20, 7])
def test_packed_20_neuron_layer_decodes_deterministic_spikes(per_circuit: int) -> None:
    # theta_ent = 0 decouples the memory; phi in {0, pi} and theta_in in {0, pi} make every spike certain:
    # spike = (z > 0) xor (theta_in == pi). theta_mem is random (it must not matter).
    rng = np.random.default_rng(5)
    T, B, n = 3, 4, 20
    z = rng.integers(0, 2, size=(T, B, n)).astype(float)
    flip = rng.integers(0, 2, size=n)
    ang = np.stack([np.zeros(n), rng.uniform(0, 2 * np.pi, n), np.pi * flip])
    be = AerBackend(options=AerOptions(neurons_per_circuit=per_circuit))
    res = be.run_layer(z, ang, seed=1)
    expected = np.logical_xor(z > 0, flip.astype(bool)).astype(float)
    np.testing.assert_array_equal(res.single_shot, expected)
    assert res.circuits == -(-n // per_circuit) and res.jobs == 1
    assert res.qubits_per_circuit == 2 * min(n, per_circuit)


def test_deferred_layout_final_state_is_exactly_the_joint_distribution() -> None:
    rng = np.random.default_rng(9)
    T, n = 3, 2
    z = rng.uniform(-0.3, 1.0, size=(T, 1, n))
    ang = rng.uniform(0, 2 * np.pi, size=(3, n))
    lc = compile_layer(n, T, layout="deferred")
    vals = bind_matrix(lc, lc.circuit, z, ang)[0]
    bound = lc.circuit.assign_parameters(dict(zip(lc.circuit.parameters, vals, strict=True)))
    probs = Statevector(bound.remove_final_measurements(inplace=False)).probabilities_dict()
    ref = oracle(z[:, 0], ang)
    for k in range(n):
        got = np.zeros(2**T)
        for key, p in probs.items():
            train = sum(int(key[::-1][lc.io_qubits[k][t]]) << t for t in range(T))
            got[train] += p
        np.testing.assert_allclose(got, ref[:, k], atol=1e-10)


@pytest.mark.parametrize(
    ("layout", "mode"), [("mid-circuit", "quantum"), ("deferred", "quantum"), ("mid-circuit", "memoryless")]
)
def test_aer_joint_distribution_matches_engine(layout: str, mode: str) -> None:
    rng = np.random.default_rng(21)
    T, n, shots = 4, 3, 3000
    z = rng.uniform(-0.5, 1.0, size=(T, 1, n))
    ang = rng.uniform(0, 2 * np.pi, size=(3, n))
    be = AerBackend(options=AerOptions(layout=layout))  # type: ignore[arg-type]
    res = be.run_layer(z, ang, shots=shots, mode=mode, seed=1234)  # type: ignore[arg-type]
    ref = oracle(z[:, 0], ang, mode)
    idx = train_index(res.spikes[:, 0])  # (S, n)
    for k in range(n):
        assert chi_square_pvalue(idx[:, k], ref[:, k]) > 1e-3
    # the independent numpy reference agrees with the engine oracle
    np.testing.assert_allclose(joint_distribution(z[:, 0], ang, mode == "memoryless"), ref, atol=1e-10)


def test_chi_square_rejects_a_wrong_distribution() -> None:
    # power check: the same samples against a neuron with a different theta_ent must fail
    rng = np.random.default_rng(21)
    T, n = 4, 1
    z = rng.uniform(0.0, 1.0, size=(T, 1, n))
    ang = np.array([[2.0], [1.0], [0.5]])
    res = AerBackend().run_layer(z, ang, shots=3000, seed=99)
    wrong = ang.copy()
    wrong[0] += 0.6
    assert chi_square_pvalue(train_index(res.spikes[:, 0])[:, 0], oracle(z[:, 0], wrong)[:, 0]) < 1e-3


def test_simulator_qasm_round_trips() -> None:
    lc = compile_layer(2, 2)
    text = simulator_qasm(lc, np.full((2, 1, 2), 0.4), np.ones((3, 2)))
    assert "include" not in text and "crx" in text
    loaded = qasm3.loads(text)
    assert loaded.num_qubits == 4 and loaded.count_ops()["measure"] == 4
