"""Training-step throughput of an SQSNN against its two linear layers alone.

Times forward + backward of a 784-1000-10 SQSNN (batch 256, T = 5, float64, `quantum` mode unless
``--mode``) on rate-coded random inputs, and the same step with the SQS neurons removed (the two
``linear`` calls on the same spike tensors, summed into the same kind of loss). Prints samples/s and the
ratio of the two step times. The reference run in the README: ``python bench/train_throughput.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sqsnn.network import NetworkConfig, SQSNetwork


def time_step(step: Callable[[], None], repeats: int) -> float:
    """Median wall time (s) of ``step`` after two warm-up calls."""
    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="784,1000,10")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--mode", default="quantum", choices=["quantum", "memoryless", "official"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    net = SQSNetwork(NetworkConfig(sizes=sizes, mode=args.mode))
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(args.T, args.batch, sizes[0], generator=gen, dtype=torch.float64) < 0.15).double()
    labels = torch.randint(0, sizes[-1], (args.batch,), generator=gen)

    def sqs_step() -> None:
        out = net(x, gen)
        loss = torch.nn.functional.cross_entropy(out.spikes[-1].mean(0), labels)
        net.zero_grad(set_to_none=True)
        loss.backward()

    hidden = net(x, gen).spikes[0].detach()
    weights = [layer.weight for layer in net.layers]

    def linear_step() -> None:
        h = torch.nn.functional.linear(x, weights[0])
        o = torch.nn.functional.linear(hidden, weights[1])
        loss = torch.nn.functional.cross_entropy(o.mean(0), labels) + h.mean()
        net.zero_grad(set_to_none=True)
        loss.backward()

    t_sqs = time_step(sqs_step, args.repeats)
    t_lin = time_step(linear_step, args.repeats)
    print(
        f"network {'-'.join(map(str, sizes))}, batch {args.batch}, T {args.T}, mode {args.mode}, "
        f"float64, torch threads {torch.get_num_threads()}"
    )
    print(f"SQSNN step (forward + backward): {t_sqs * 1e3:8.1f} ms  -> {args.batch / t_sqs:8.0f} samples/s")
    print(f"linear layers alone:             {t_lin * 1e3:8.1f} ms  -> {args.batch / t_lin:8.0f} samples/s")
    print(f"ratio SQSNN / linear:            {t_sqs / t_lin:8.2f}")


if __name__ == "__main__":
    main()
