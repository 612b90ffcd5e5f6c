"""SQSNN networks, the BPTT trainer and the science CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sqsnn.cli import app
from sqsnn.datasets import load_dataset
from sqsnn.network import NetworkConfig, NetworkOutput, SQSNetwork, load_model, predict_from_output
from sqsnn.training.bptt import Checkpoint, TrainConfig, TrainingStopped, evaluate, train


def test_parameter_count_is_weights_biases_and_three_angles_per_neuron() -> None:
    plain = SQSNetwork(NetworkConfig(sizes=[784, 1000, 10]))
    assert plain.num_parameters() == 784 * 1000 + 1000 * 10 + 3 * (1000 + 10)
    full = SQSNetwork(NetworkConfig(sizes=[256, 2, 2], bias=True, direct=True))
    assert full.num_parameters() == 256 * 2 + 2 * 2 + 256 * 2 + (2 + 2) + 3 * (2 + 2)


def test_direct_synapses_feed_the_input_to_the_last_layer() -> None:
    net = SQSNetwork(NetworkConfig(sizes=[6, 3, 2], direct=True, seed=1))
    x = (torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.5).double()
    out = net(x, torch.Generator().manual_seed(2))
    last = net.layers[-1]
    z = last.currents(out.spikes[0], x)
    expected = x @ last.direct_weight.T + out.spikes[0] @ last.weight.T  # type: ignore[union-attr]
    assert torch.allclose(z, expected)


def test_save_load_roundtrip_reproduces_outputs(tmp_path: Path) -> None:
    net = SQSNetwork(NetworkConfig(sizes=[8, 5, 3], mode="quantum", bias=True, seed=3))
    with torch.no_grad():
        net.layers[0].bias.add_(0.1)  # type: ignore[union-attr]
    path = tmp_path / "m.pt"
    net.save(path, dataset="digits")
    loaded, meta = SQSNetwork.load(path)
    assert meta == {"dataset": "digits"} and loaded.config == net.config
    x = (torch.rand(5, 4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) < 0.4).double()
    a = net(x, torch.Generator().manual_seed(7))
    b = loaded(x, torch.Generator().manual_seed(7))
    assert all(torch.equal(p, q) for p, q in zip(a.probs, b.probs, strict=True))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match=r"junk\.pt|checkpoint|pickle|load"):
        load_model(tmp_path / "junk.pt")


def test_predict_counts_spikes_and_breaks_ties_by_probability() -> None:
    spikes = torch.tensor([[[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]])  # counts 1, 1, 1
    probs = torch.tensor([[[0.2, 0.9, 0.1]], [[0.2, 0.1, 0.5]]])  # means 0.2, 0.5, 0.3
    assert predict_from_output(spikes, probs).tolist() == [1]
    spikes[1, 0, 0] = 1.0  # count 2 wins whatever the probabilities
    assert SQSNetwork.predict(NetworkOutput([spikes], [probs])).tolist() == [0]


def test_invalid_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="sizes"):
        NetworkConfig(sizes=[10])
    with pytest.raises(ValueError, match="memory mode"):
        NetworkConfig(sizes=[4, 2], mode="classic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="p_max"):
        TrainConfig(p_max=1.5)


def test_training_learns_and_resumes_from_a_checkpoint() -> None:
    """Two-class digits: accuracy well above chance; resuming from the epoch-1 checkpoint, taken while
    training went on to epoch 3, equals an uninterrupted run (the checkpoint is a snapshot)."""
    data = load_dataset("digits", classes=[0, 1])
    config = TrainConfig(epochs=6, batch_size=8, lr=1e-3, loss="probs", seed=4)
    full = train(SQSNetwork(NetworkConfig(sizes=[64, 16, 2], seed=5)), data, config)
    n_test = len(data.y_test)
    # chance is 1/2; P(Binomial(n_test, 1/2) >= 0.8 n_test) < 1e-6 for the 72 test images
    assert full.test_accuracy >= 0.8, (full.test_accuracy, n_test)

    saved: list[Checkpoint] = []
    first = SQSNetwork(NetworkConfig(sizes=[64, 16, 2], seed=5))
    with pytest.raises(TrainingStopped):
        train(
            first,
            data,
            config,
            on_epoch=lambda _m, c: saved.append(c),
            should_stop=lambda: len(saved) == 3,
        )
    resumed = train(SQSNetwork(NetworkConfig(sizes=[64, 16, 2], seed=5)), data, config, resume=saved[0])
    assert [m.val_accuracy for m in resumed.metrics] == [m.val_accuracy for m in full.metrics]
    assert (resumed.best_epoch, resumed.test_accuracy) == (full.best_epoch, full.test_accuracy)


def test_float32_training_runs_in_float32_and_learns() -> None:
    """TrainConfig(dtype="float32") converts the model and trains it well above chance (its own sampling
    stream: float32 uniforms are other numbers than float64's, so the runs differ)."""
    data = load_dataset("digits", classes=[0, 1])
    net = SQSNetwork(NetworkConfig(sizes=[64, 16, 2], seed=5))
    result = train(net, data, TrainConfig(epochs=6, batch_size=8, lr=1e-3, loss="probs", seed=4, dtype="float32"))
    assert all(p.dtype == torch.float32 for p in net.parameters())
    # chance is 1/2; P(Binomial(72, 1/2) >= 0.75 * 72) < 2e-5
    assert result.test_accuracy >= 0.75
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="float16")  # type: ignore[arg-type]


@pytest.mark.parametrize("eval_runs", [1, 3])
def test_the_best_validation_epoch_is_kept_and_the_test_split_evaluated_once_with_it(eval_runs: int) -> None:
    data = load_dataset("digits", limit_train=400)
    config = TrainConfig(epochs=5, batch_size=16, lr=2e-2, loss="probs", seed=1, eval_runs=eval_runs)
    saved: list[Checkpoint] = []
    net = SQSNetwork(NetworkConfig(sizes=[64, 12, 10], seed=3))
    result = train(net, data, config, on_epoch=lambda _m, c: saved.append(c))
    vals = [m.val_accuracy for m in result.metrics]
    assert all(v is not None for v in vals) and all(m.test_accuracy is None for m in result.metrics)
    best = vals.index(max(vals)) + 1  # the first epoch with the highest validation accuracy
    assert result.best_epoch == best and result.val_accuracy == max(vals)
    kept = saved[best - 1].model_state
    assert all(torch.equal(v, kept[k]) for k, v in net.state_dict().items())
    assert all(c.best_model_state is not None for c in saved)
    # the reported test figures are one evaluation of the kept weights, continuing the run's generator
    gen = torch.Generator()
    gen.set_state(saved[-1].generator_state)
    again = evaluate(
        net, data.x_test, data.y_test, data.kind, T=config.T, p_max=config.p_max, generator=gen, runs=eval_runs
    )
    assert (again.accuracy, again.spike_rates) == (result.test_accuracy, result.spike_rates)
    # a validation figure is a mean over eval_runs runs of the held-out samples
    n_val = len(data.y_val)  # type: ignore[arg-type]
    assert all(round(v * n_val * eval_runs, 6).is_integer() for v in vals)  # type: ignore[operator]


def test_an_evaluation_of_several_runs_is_that_many_single_shot_runs_in_a_row() -> None:
    """runs = 3 with one batch per run draws exactly what three single-run evaluations draw in a row (the same
    generator carried on); its accuracy is the mean of theirs, and the runs differ (the readout is random)."""
    data = load_dataset("digits", limit_train=200)
    net = SQSNetwork(NetworkConfig(sizes=[64, 16, 10], seed=2))
    x, y, n = data.x_test, data.y_test, len(data.y_test)
    kwargs = {"T": 5, "p_max": 1.0, "batch_size": n, "loss": "probs"}
    pooled = evaluate(net, x, y, data.kind, generator=torch.Generator().manual_seed(9), runs=3, **kwargs)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(9)
    singles = [evaluate(net, x, y, data.kind, generator=gen, **kwargs) for _ in range(3)]  # type: ignore[arg-type]
    assert torch.equal(pooled.predictions, torch.cat([s.predictions for s in singles]))
    assert pooled.accuracy == pytest.approx(sum(s.accuracy for s in singles) / 3, abs=1e-12)
    assert pooled.spike_rates == pytest.approx(
        [sum(r) / 3 for r in zip(*(s.spike_rates for s in singles), strict=True)]
    )
    assert not torch.equal(singles[0].predictions, singles[1].predictions)
    with pytest.raises(ValueError, match="runs"):
        evaluate(net, x, y, data.kind, generator=gen, runs=0, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eval_runs"):
        TrainConfig(eval_runs=0)


def test_without_a_validation_split_the_test_split_is_evaluated_every_epoch_and_the_last_kept() -> None:
    data = load_dataset("digits", classes=[0, 1], val_fraction=0.0)
    result = train(SQSNetwork(NetworkConfig(sizes=[64, 8, 2], seed=0)), data, TrainConfig(epochs=2, seed=0))
    assert all(m.val_accuracy is None and m.test_accuracy is not None for m in result.metrics)
    assert (result.best_epoch, result.val_accuracy) == (2, None)
    assert result.test_accuracy == result.metrics[-1].test_accuracy


def test_cli_train_then_evaluate(tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "digits.pt"
    result = runner.invoke(
        app,
        ["train", "--dataset", "digits", "--hidden", "8", "--epochs", "1", "--limit-train", "200", "--out", str(model)],
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "parameters" in result.output
    result = runner.invoke(app, ["evaluate", str(model)])
    assert result.exit_code == 0, result.output
    assert "digits: test accuracy" in result.output


def test_cli_errors_name_the_fix(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "SQSNN_DATA_DIR" in result.output or "--data-dir" in result.output
    result = runner.invoke(app, ["train", "--hidden", "a,b"])
    assert result.exit_code == 2 and "--hidden" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "sqsnn train --out" in result.output


def test_fan_in_scaling_gives_each_weight_matrix_lr_times_1000_over_its_inputs() -> None:
    """Adam's first step moves a parameter by lr * |g| / (|g| + 1e-8): by its learning rate unless the
    gradient is tiny, never more. So the largest steps show the rates: 1000 / in times ``lr`` for (out, in)
    weights, ``lr`` for the angles."""
    data = load_dataset("digits", limit_train=64, val_fraction=0.0)
    config = TrainConfig(epochs=1, batch_size=64, lr=1e-4, schedule="constant", seed=0)
    net = SQSNetwork(NetworkConfig(sizes=[64, 20, 10], seed=0))
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    train(net, data, config)
    for name, value in net.named_parameters():
        step = (value.detach() - before[name]).abs()
        moved = step[step > 0]
        assert moved.numel() > 0, name
        want = 1e-4 * 1000 / value.shape[1] if value.dim() == 2 else 1e-4
        assert bool((moved <= want * (1 + 1e-9)).all()) and float(moved.max()) == pytest.approx(want, rel=1e-4), name
    flat = SQSNetwork(NetworkConfig(sizes=[64, 20, 10], seed=0))
    train(flat, data, TrainConfig(epochs=1, batch_size=64, lr=1e-4, schedule="constant", seed=0, lr_scaling="none"))
    step = (flat.layers[0].weight.detach() - before["layers.0.weight"]).abs()
    assert float(step.max()) == pytest.approx(1e-4, rel=1e-4)


def test_cli_takes_the_dataset_defaults_for_flags_not_given_and_says_so() -> None:
    from sqsnn.training.defaults import DATASET_DEFAULTS

    runner = CliRunner()
    args = ["train", "--dataset", "digits", "--hidden", "4", "--epochs", "1", "--limit-train", "100"]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert DATASET_DEFAULTS["digits"].train == {"loss": "probs", "p_max": 1.0, "epochs": 60, "T": 20, "eval_runs": 10}
    assert "loss probs (digits default)" in flat and "p_max 1.0 (digits default)" in flat
    assert "T 20 (digits default)" in flat and "eval_runs 10 (digits default)" in flat
    assert "epochs 1 (flag)" in flat and "lr 0.001 (default)" in flat
    assert "best validation accuracy" in flat and "test split was evaluated once" in flat
    result = runner.invoke(app, [*args, "--loss", "counts", "--val-fraction", "0"], env={"COLUMNS": "300"})
    flat = " ".join(result.output.split())
    assert result.exit_code == 0 and "loss counts (flag)" in flat and "no validation split" in flat


def test_dataset_defaults_name_only_trainer_fields_and_the_28x28_sets_differ_only_in_fmnists_epochs() -> None:
    import dataclasses

    from sqsnn.training.defaults import DATASET_DEFAULTS, DatasetDefaults, defaults_for

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, preset in DATASET_DEFAULTS.items():
        assert set(preset.train) <= fields, name
        TrainConfig(**preset.train)  # valid values
        NetworkConfig(sizes=[4, 3, 2], **preset.network)
    with pytest.raises(ValueError, match=r"network defaults may set .*got mode"):
        DatasetDefaults(network={"mode": "memoryless"})
    assert defaults_for("mnist") is defaults_for("kmnist") and defaults_for("mnist").hidden == (1000,)
    assert defaults_for("fmnist").train == {**defaults_for("mnist").train, "epochs": 48}  # on validation
    assert (defaults_for("fmnist").hidden, defaults_for("fmnist").network) == (
        defaults_for("mnist").hidden,
        defaults_for("mnist").network,
    )
    assert defaults_for("mnist").train["lr"] == 5e-4 and defaults_for("mnist").train["epochs"] == 24  # on validation
    assert defaults_for("mnist-dvs") is defaults_for("usps") and defaults_for("usps").hidden == (128,)
    assert defaults_for("usps") is DATASET_DEFAULTS["digits"] and defaults_for("usps").network == {}  # digits' entry


def test_output_theta_in_centres_only_the_last_layers_theta_in_and_leaves_the_rest_of_the_draw() -> None:
    import math

    plain = SQSNetwork(NetworkConfig(sizes=[20, 30, 4], seed=3))
    shifted = SQSNetwork(NetworkConfig(sizes=[20, 30, 4], seed=3, output_theta_in=-math.pi / 2))
    for name, value in plain.state_dict().items():
        moved = shifted.state_dict()[name]
        if name == "layers.1.theta_in":
            assert torch.allclose(moved, value - math.pi / 2)  # same uniform draw, centre moved
        else:
            assert torch.equal(moved, value), name
    # below z = 0 an output fires at t = 1 with probability sin^2(theta_in / 2): about 1/2 here, not silence,
    # so the loss does not draw the non-target outputs into the region that passes no gradient
    from sqsnn.network import SQSLayer
    from sqsnn.neuron import sqs_layer

    last = shifted.layers[1]
    assert isinstance(last, SQSLayer)
    _, p = sqs_layer(-torch.ones(1, 6, 4, dtype=torch.float64), last.params(), "quantum", torch.Generator(), "sigmoid")
    expected = torch.sin(last.theta_in.detach() / 2) ** 2
    assert (
        torch.allclose(p[0], expected.expand(6, 4))
        and float(expected.min()) > math.sin((math.pi / 2 - 0.5) / 2) ** 2 - 1e-12
    )
