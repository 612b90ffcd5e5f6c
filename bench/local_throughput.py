"""Training throughput of the local learning rule (samples/s), with BPTT on the same network as reference.

Cases (random rate-coded inputs, p_max = 0.5, labels uniform):

* 256-2-2 with direct input->output synapses, T = 10 (the reference's USPS-style task): estimator
  ``official`` with the reference constants (batch 1) and estimator ``exact`` (batch 1 and batch 32);
* 784-256-10, T = 5: estimators ``exact`` and ``chain`` (batch 32) and ``official`` (batch 1).

For every case the script prints samples/s of the local rule, samples/s of one BPTT (Adam) step on the same
network and batch size, and their ratio.
Usage: ``python bench/local_throughput.py [--seconds 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from sqsnn.encoders import rate_encode
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.bptt import TrainConfig, batch_loss
from sqsnn.training.local import LocalConfig, LocalRule


def _batches(sizes: list[int], batch: int, T: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = rate_encode(torch.rand(batch, sizes[0], generator=gen, dtype=torch.float64), T, 0.5, gen)
    y = torch.randint(0, sizes[-1], (batch,), generator=gen)
    return x, y


def _rate(step: Any, batch: int, seconds: float) -> float:
    step()  # warm-up
    n, started = 0, time.perf_counter()
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return n * batch / elapsed


def measure(sizes: list[int], T: int, batch: int, config: LocalConfig, seconds: float) -> tuple[float, float]:
    """``(local samples/s, BPTT samples/s)`` on one network and batch size."""
    gen = torch.Generator().manual_seed(0)
    net = SQSNetwork(NetworkConfig(sizes=sizes, mode="quantum", direct=True, seed=0))
    rule = LocalRule(net, config, gen)
    x, y = _batches(sizes, batch, T, gen)
    local = _rate(lambda: rule.step(x, y), batch, seconds)

    bptt_net = SQSNetwork(NetworkConfig(sizes=sizes, mode="quantum", direct=True, seed=0))
    opt = torch.optim.Adam(bptt_net.parameters(), lr=1e-3)
    train_cfg = TrainConfig(T=T, batch_size=batch)

    def bptt_step() -> None:
        loss = batch_loss(bptt_net(x, gen), y, train_cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return local, _rate(bptt_step, batch, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [
        ([256, 2, 2], 10, 1, LocalConfig.reference(T=10)),
        ([256, 2, 2], 10, 1, LocalConfig(estimator="exact", batch_size=1, T=10)),
        ([256, 2, 2], 10, 32, LocalConfig(estimator="exact", batch_size=32, T=10)),
        ([784, 256, 10], 5, 1, LocalConfig.reference(T=5)),
        ([784, 256, 10], 5, 32, LocalConfig(estimator="exact", batch_size=32, T=5)),
        ([784, 256, 10], 5, 32, LocalConfig(estimator="chain", batch_size=32, T=5)),
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.seconds:.1f} s per measurement")
    print(f"{'network':<14}{'T':>3}{'batch':>6}  {'estimator':<9}", end="")
    print(f"{'local/s':>10}{'bptt/s':>10}{'local/bptt':>11}")
    for sizes, T, batch, cfg in cases:
        local, bptt = measure(sizes, T, batch, cfg, args.seconds)
        name = "-".join(map(str, sizes)) + "+d"
        print(f"{name:<14}{T:>3}{batch:>6}  {cfg.estimator:<9}{local:>10.1f}{bptt:>10.1f}{local / bptt:>11.2f}")


if __name__ == "__main__":
    main()
