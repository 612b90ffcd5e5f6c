"""Registry, fallback policy, budgets, estimates and layer-by-layer network execution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from backends.base import BackendUnavailable, BudgetExceeded
from backends.estimate import estimate_network
from backends.execute import conditional_probabilities, qubit_utilisation, run_network
from backends.options import Budget, RunPolicy
from backends.registry import get_backend, parse_name, resolve
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.neuron import sqs_layer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def no_ibm_account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_CHANNEL", "QISKIT_IBM_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no saved account either


def tiny_net(mode: str = "quantum", direct: bool = False) -> SQSNetwork:
    return SQSNetwork(NetworkConfig(sizes=[6, 4, 3], mode=mode, direct=direct, seed=3))  # type: ignore[arg-type]


def test_names_and_options_are_validated() -> None:
    assert parse_name("aer-noisy:fake_torino") == ("aer-noisy", "fake_torino")
    assert parse_name("braket:arn:aws:braket:::device/qpu/x/y") == ("braket", "arn:aws:braket:::device/qpu/x/y")
    with pytest.raises(ValueError, match="unknown backend 'qpu'"):
        parse_name("qpu")
    with pytest.raises(ValueError, match="needs a target"):
        parse_name("ibm")
    with pytest.raises(ValidationError, match="neurons_per_circuitt"):
        get_backend("aer", {"neurons_per_circuitt": 4})
    with pytest.raises(ValidationError, match="neurons_per_circuit"):
        get_backend("braket-local:sv", {"neurons_per_circuit": 0})
    with pytest.raises(ValueError, match="unknown IBM fake backend"):
        get_backend("aer-noisy:fake_nowhere")


def test_unavailable_hardware_without_fallback_fails_clearly(no_ibm_account: None) -> None:
    with pytest.raises(BackendUnavailable, match=r"'ibm:ibm_torino' is unavailable: .*fallback='none'"):
        resolve("ibm:ibm_torino", policy=RunPolicy(fallback="none"))
    with pytest.raises(BackendUnavailable, match="QISKIT_IBM_TOKEN"):
        run_network(tiny_net(), torch.zeros(2, 1, 6), "ibm:ibm_torino")


def test_unavailable_hardware_with_aer_fallback_runs_and_records_it(no_ibm_account: None) -> None:
    run = run_network(tiny_net(), torch.ones(3, 5, 6), "ibm:ibm_torino", policy=RunPolicy(fallback="aer"), seed=1)
    assert run.backend == "aer" and run.fallback is not None
    assert run.fallback.requested == "ibm:ibm_torino" and run.fallback.used == "aer"
    assert "not reachable" in run.fallback.reason
    assert all(layer.fallback == run.fallback and layer.backend == "aer" for layer in run.layers)
    assert [s.shape for s in run.spikes] == [(3, 5, 4), (3, 5, 3)] and run.predictions.shape == (5,)


def test_budget_is_enforced_before_submission() -> None:
    x = torch.ones(3, 10, 6)
    with pytest.raises(BudgetExceeded, match="max_shots=15"):
        run_network(tiny_net(), x, "aer", policy=RunPolicy(budget=Budget(max_shots=15)))
    run = run_network(tiny_net(), x, "aer", policy=RunPolicy(budget=Budget(max_shots=20, max_cost_usd=0)))
    assert run.estimate.shots == 20 and run.estimate.cost_usd == 0.0


def test_estimate_counts_for_packed_aer() -> None:
    est = estimate_network([784, 64, 10], 5, 256, get_backend("aer", {"neurons_per_circuit": 32}))
    assert [e.circuits for e in est.layers] == [2, 1] and [e.pubs for e in est.layers] == [2, 1]
    assert est.jobs == 2 and est.shots == 3 * 256 and est.qubits_per_circuit == 64
    assert est.layers[1].qubits_per_circuit == 20


def test_deterministic_network_gives_identical_spikes_on_exact_and_aer() -> None:
    # weights in {0, 1}, all angles 0: a neuron spikes iff its current is > 0 and < 2 (phi = pi z mod 2pi
    # with z in {0, 1}); both backends must return the same spikes and predictions.
    net = tiny_net(direct=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) < 0.2).double())  # type: ignore[operator]
            for p in layer.params():
                p.zero_()
            if layer.direct_weight is not None:  # type: ignore[union-attr]
                layer.direct_weight.zero_()  # type: ignore[union-attr]
    x = (torch.rand(4, 12, 6, generator=gen) < 0.5).double()
    # keep currents in {0, 1}: at most one active synapse per neuron
    for layer in net.layers:
        w = layer.weight.data  # type: ignore[union-attr]
        keep = torch.zeros_like(w)
        keep[torch.arange(w.shape[0]), w.argmax(1)] = 1
        w.mul_(keep)
    exact = run_network(net, x, "exact", seed=0)
    aer = run_network(net, x, "aer", seed=0)
    for a, b in zip(exact.spikes, aer.spikes, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.equal(exact.predictions, aer.predictions)
    assert aer.layers[0].jobs == 1 and qubit_utilisation(aer) == 1.0


def test_output_spike_rates_agree_between_exact_and_aer() -> None:
    net = tiny_net(direct=True)
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(3, 1, 6, generator=gen) < 0.5).double().expand(3, 1500, 6).contiguous()
    a = run_network(net, x, "exact", seed=2).spikes[-1].mean(1)
    b = run_network(net, x, "aer", seed=3).spikes[-1].mean(1)
    # two-sample difference of Bernoulli means (T x 3 cells), 5 sigma each
    sd = torch.sqrt((a * (1 - a) + b * (1 - b)) / 1500).clamp_min(1e-3)
    assert torch.all((a - b).abs() < 5 * sd), (a, b)


def test_conditional_probabilities_reproduce_the_engine() -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.rand(5, 7, 3, generator=gen, dtype=torch.float64)
    net = tiny_net()
    params = net.layers[0].params()  # type: ignore[operator]
    params = type(params)(*(p.detach()[:3] for p in params))
    for mode in ("quantum", "memoryless", "official"):
        spikes, p = sqs_layer(z, params, mode, torch.Generator().manual_seed(4))  # type: ignore[arg-type]
        np.testing.assert_allclose(
            conditional_probabilities(z, params, mode, spikes.detach()).numpy(),  # type: ignore[arg-type]
            p.detach().numpy(),
            atol=1e-12,
        )


def test_every_backend_kind_implements_the_interface() -> None:
    from backends.base import Backend

    for name in ("exact", "aer", "aer-noisy:fake_torino", "ibm-local:fake_torino", "braket-local:dm"):
        be = get_backend(name)
        assert isinstance(be, Backend) and be.name == name
        caps = be.capabilities()
        assert caps.mid_circuit_measurement and caps.reset and be.availability().available


def test_estimate_command_prints_and_enforces_the_budget() -> None:
    import typer
    from typer.testing import CliRunner

    from backends.cli import estimate_command

    app = typer.Typer()
    app.command("estimate")(estimate_command)
    app.command("noop")(lambda: None)  # a second command keeps "estimate" as a sub-command
    runner = CliRunner()
    ok = runner.invoke(app, ["estimate", "--backend", "aer", "--sizes", "784,64,10", "--batch", "256"])
    assert ok.exit_code == 0 and "768" in ok.output  # 256 x (2 + 1) circuits
    garnet = "braket:arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"
    over = runner.invoke(app, ["estimate", "--backend", garnet, "--shots", "100", "--max-cost", "10"])
    assert over.exit_code == 1 and "max_cost_usd=10" in over.output
    bad = runner.invoke(app, ["estimate", "--backend", "qpu"])
    assert bad.exit_code == 2 and "unknown backend" in bad.output


def test_noisy_readout_of_forbidden_spikes_keeps_probabilities_and_predictions_finite() -> None:
    """Output neurons that cannot spike (z <= 0, all angles 0) read out on a noisy device: the device reports
    spikes the model forbids; they are counted and the tie-breaking probabilities stay finite."""
    net = tiny_net()
    with torch.no_grad():
        out = net.layers[-1]
        out.weight.fill_(-1.0)  # type: ignore[operator]
        for angle in out.params():  # type: ignore[operator]
            angle.zero_()
    x = (torch.rand(3, 200, 6, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    run = run_network(net, x, "aer-noisy:fake_kingston", seed=1)
    assert run.impossible_spikes > 0
    assert run.impossible_spikes == int(run.spikes[-1].sum())  # every output spike is forbidden
    assert all(torch.isfinite(p).all() for p in run.probs)
    counts = run.spikes[-1].sum(0)
    assert torch.equal(counts.gather(1, run.predictions[:, None])[:, 0], counts.max(1).values)
