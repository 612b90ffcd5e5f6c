"""The spike-rate penalty of the BPTT trainer (``TrainConfig.rate_penalty``): its value in the loss, its
validation, and that it lowers the spike rate of both an SQSNN and the LIF baseline."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sqsnn.baselines.lif import LIFConfig, LIFNetwork
from sqsnn.datasets import load_dataset
from sqsnn.network import NetworkConfig, NetworkOutput, SQSNetwork
from sqsnn.training.bptt import TrainConfig, batch_loss, evaluate, mean_spike_rate, train


def test_penalty_adds_lambda_times_the_mean_rate_over_all_neurons() -> None:
    hidden = torch.tensor([[[0.2, 0.4, 0.6]], [[0.0, 1.0, 0.5]]], requires_grad=True)  # (T=2, B=1, 3)
    output = torch.tensor([[[0.1, 0.9]], [[0.3, 0.7]]], requires_grad=True)  # (T=2, B=1, 2)
    out = NetworkOutput(spikes=[hidden.detach(), output.detach()], probs=[hidden, output])
    y = torch.tensor([1])
    plain = batch_loss(out, y, TrainConfig(loss="probs"))
    expected_ce = nn.functional.cross_entropy(5.0 * torch.tensor([[0.2, 0.8]]), y)
    torch.testing.assert_close(plain, expected_ce)
    rate = (0.2 + 0.4 + 0.6 + 0.0 + 1.0 + 0.5 + 0.1 + 0.9 + 0.3 + 0.7) / 10
    torch.testing.assert_close(mean_spike_rate(out), torch.tensor(rate))
    penalised = batch_loss(out, y, TrainConfig(loss="probs", rate_penalty=2.0))
    torch.testing.assert_close(penalised, expected_ce + 2.0 * rate)
    penalised.backward()
    assert hidden.grad is not None
    torch.testing.assert_close(hidden.grad, torch.full_like(hidden, 2.0 / 10))  # the hidden layer: penalty only


@pytest.mark.parametrize("value", [-0.1, float("nan")])
def test_negative_or_nan_penalty_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="rate_penalty"):
        TrainConfig(rate_penalty=value)


@pytest.mark.parametrize("kind", ["sqsnn", "lif"])
def test_penalty_lowers_the_spike_rate(kind: str) -> None:
    data = load_dataset("digits", classes=[0, 1], limit_train=120, limit_test=60, val_fraction=0)
    rates = {}
    for lam in (0.0, 5.0):
        if kind == "sqsnn":
            model: SQSNetwork | LIFNetwork = SQSNetwork(NetworkConfig(sizes=[64, 16, 2], seed=0))
        else:
            model = LIFNetwork(LIFConfig(sizes=[64, 16, 2], seed=0))
        config = TrainConfig(epochs=3, batch_size=20, loss="probs", p_max=1.0, rate_penalty=lam, seed=0)
        train(model, data, config)
        result = evaluate(
            model, data.x_test, data.y_test, data.kind, T=5, p_max=1.0, generator=torch.Generator().manual_seed(1)
        )
        rates[lam] = sum(r * n for r, n in zip(result.spike_rates, (16, 2), strict=True)) / 18
    assert rates[5.0] < 0.6 * rates[0.0], rates
