"""Training-step throughput of an SQSNN against its two dense linear layers, per dtype and synapse path.

Times forward + loss + backward of a 784-1000-10 SQSNN (batch 256, T = 5, ``quantum`` mode unless ``--mode``) on
rate-coded random inputs (``--density`` ones, default 0.15), for float64 and float32 and for dense, event-driven
and automatically chosen synapses (:mod:`sqsnn.synapses`; ``auto`` applies
:func:`sqsnn.event_threshold.event_density` per layer: the threshold measured on this machine), and the same
step with the SQS neurons removed: the two dense ``linear`` calls on the same spike tensors, summed into a loss
("linear layers alone", the denominator of every ratio, per dtype). Every row prints the step time (median
wall), samples/s, the breakdown (synapses forward / backward, neurons forward / backward, loss forward +
backward; each timed alone on the same tensors), the spike densities (input, hidden, output) and the ratio to
the linear layers, all measured in one run. Also printed: the process CPU time of each step (less sensitive to
other processes on a shared machine) and the load average.

``--densities 0.02,0.05,...`` instead times the first layer's synapses (forward + weight gradient) dense
and event-driven over input densities: where they cross is what :mod:`sqsnn.event_threshold` measures.

On a shared machine run it with ``OMP_WAIT_POLICY=PASSIVE`` (torch's and numba's OpenMP threads otherwise
spin between parallel regions and the timings measure the contention); ``--threads 1 --clock cpu`` gives
the CPU time of one thread.
Usage: ``python bench/train_throughput.py [--threads 2] [--repeats 10] [--dtypes float64,float32]
[--clock wall|cpu] [--densities 0.02,0.05,0.1,0.15,0.2,0.3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sqsnn import event_threshold, kernels
from sqsnn.network import NetworkConfig, SQSLayer, SQSNetwork
from sqsnn.neuron import sqs_layer


@dataclass
class Timing:
    """Median wall and process CPU seconds of one callable."""

    wall: float
    cpu: float


def time_it(step: Callable[[], object], repeats: int) -> Timing:
    """Median wall and CPU time (s) of ``step`` after two warm-up calls."""
    for _ in range(2):
        step()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus))


def bench_case(
    net: SQSNetwork, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, repeats: int
) -> dict[str, Timing]:
    """Full step and its parts for the network's current dtype and the current synapse path."""
    mode, surrogate = net.config.mode, net.config.surrogate
    layers = [layer for layer in net.layers if isinstance(layer, SQSLayer)]

    def step() -> None:
        out = net(x, gen)
        loss = torch.nn.functional.cross_entropy(out.spikes[-1].mean(0), labels)
        net.zero_grad(set_to_none=True)
        loss.backward()

    with torch.no_grad():
        out = net(x, gen)
    h = out.spikes[0].detach().requires_grad_(True)
    inputs = [x, h]

    def synapses_forward() -> list[torch.Tensor]:
        return [layer.currents(inp) for layer, inp in zip(layers, inputs, strict=True)]

    currents = synapses_forward()
    g_currents = [torch.randn_like(z) for z in currents]

    def synapses_backward() -> None:
        net.zero_grad(set_to_none=True)
        torch.autograd.backward(currents, g_currents, retain_graph=True)

    z_leaves = [z.detach().requires_grad_(True) for z in currents]

    def neurons_forward() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [sqs_layer(z, layer.params(), mode, gen, surrogate) for z, layer in zip(z_leaves, layers, strict=True)]

    sampled = neurons_forward()
    outs = [s for s, _ in sampled]
    g_spikes = [torch.randn_like(s) for s in outs]

    def neurons_backward() -> None:
        for z in z_leaves:  # in a training step the currents are not leaves: nothing accumulates into them
            z.grad = None
        torch.autograd.backward(outs, g_spikes, retain_graph=True)

    final = out.spikes[-1].detach().requires_grad_(True)

    def loss_step() -> None:
        torch.nn.functional.cross_entropy(final.mean(0), labels).backward()

    return {
        "step": time_it(step, repeats),
        "syn fwd": time_it(synapses_forward, repeats),
        "syn bwd": time_it(synapses_backward, repeats),
        "neur fwd": time_it(neurons_forward, repeats),
        "neur bwd": time_it(neurons_backward, repeats),
        "loss": time_it(loss_step, repeats),
    }


def linear_reference(
    net: SQSNetwork, x: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, repeats: int
) -> Timing:
    """The two dense linear layers alone (forward + backward) on the same spike tensors."""
    with torch.no_grad():
        hidden = net(x, gen).spikes[0].detach()
    weights = [layer.weight for layer in net.layers if isinstance(layer, SQSLayer)]

    def linear_step() -> None:
        h = torch.nn.functional.linear(x, weights[0])
        o = torch.nn.functional.linear(hidden, weights[1])
        loss = torch.nn.functional.cross_entropy(o.mean(0), labels) + h.mean()
        net.zero_grad(set_to_none=True)
        loss.backward()

    return time_it(linear_step, repeats)


def pick(timing: Timing, clock: str) -> float:
    """The wall or CPU seconds of ``timing``."""
    return timing.wall if clock == "wall" else timing.cpu


def densities_sweep(args: argparse.Namespace, sizes: list[int]) -> None:
    """First-layer synapses, dense vs event-driven, over input densities."""
    gen = torch.Generator().manual_seed(0)
    print(
        f"synapses {sizes[0]}->{sizes[1]}, rows {args.T * args.batch}: forward + weight gradient, "
        f"median {args.clock} ms"
    )
    print(f"{'dtype':<8}{'density':>8}{'dense':>9}{'event':>9}{'event/dense':>12}")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        weight = torch.randn(sizes[1], sizes[0], generator=gen, dtype=dtype, requires_grad=True)
        for density in (float(d) for d in args.densities.split(",")):
            x = (torch.rand(args.T, args.batch, sizes[0], generator=gen) < density).to(dtype)
            g = torch.randn(args.T, args.batch, sizes[1], generator=gen, dtype=dtype)
            times = [
                pick(time_it(event_threshold.synapse_step(x, weight, g, forced), args.repeats), args.clock)
                for forced in (0.0, 1.0)
            ]
            ratio = times[1] / times[0]
            print(f"{dtype_name:<8}{density:>8.2f}{times[0] * 1e3:>9.2f}{times[1] * 1e3:>9.2f}{ratio:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="784,1000,10")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--mode", default="quantum", choices=["quantum", "memoryless", "official"])
    parser.add_argument("--density", type=float, default=0.15, help="share of ones in the input spikes")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch (and numba) threads (0: torch's default)")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--densities", default="", help="comma-separated input densities: run the sweep only")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"], help="which time the tables show")
    args = parser.parse_args()
    kernels.keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, torch threads {torch.get_num_threads()}")
    if args.densities:
        densities_sweep(args, sizes)
        return
    print(
        f"network {'-'.join(map(str, sizes))}, batch {args.batch}, T {args.T}, mode {args.mode}, input density "
        f"{args.density}; times in ms (median {args.clock}; cpu = process CPU time of the step), "
        f"event thresholds float64 {event_threshold.event_density(torch.float64)}, "
        f"float32 {event_threshold.event_density(torch.float32)}"
    )
    parts = ["syn fwd", "syn bwd", "neur fwd", "neur bwd", "loss"]
    print(
        f"{'dtype':<8}{'synapses':<9}{'step':>8}{'cpu':>8}{'samples/s':>10}"
        + "".join(f"{p:>9}" for p in parts)
        + f"{'densities in/hid/out':>22}{'/ linear':>9}"
    )
    gen = torch.Generator().manual_seed(0)
    operator = os.environ.get(event_threshold.VARIABLE)  # "auto" keeps an operator's setting, else measures
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        net = SQSNetwork(NetworkConfig(sizes=sizes, mode=args.mode)).to(dtype)
        x = (torch.rand(args.T, args.batch, sizes[0], generator=gen) < args.density).to(dtype)
        labels = torch.randint(0, sizes[-1], (args.batch,), generator=gen)
        linear = linear_reference(net, x, labels, gen, args.repeats)
        t_lin = pick(linear, args.clock)
        print(
            f"{dtype_name:<8}{'linear':<9}{t_lin * 1e3:>8.1f}{linear.cpu * 1e3:>8.1f}"
            f"{args.batch / t_lin:>10.0f}   (the two dense linear layers alone)"
        )
        for path, setting in (("dense", "0"), ("event", "1"), ("auto", operator)):
            if setting is None:
                os.environ.pop(event_threshold.VARIABLE, None)
            else:
                os.environ[event_threshold.VARIABLE] = setting
            times = bench_case(net, x, labels, gen, args.repeats)
            with torch.no_grad():
                rates = [float(x.mean())] + [float(s.mean()) for s in net(x, gen).spikes]
            t_step = pick(times["step"], args.clock)
            print(
                f"{dtype_name:<8}{path:<9}{t_step * 1e3:>8.1f}{times['step'].cpu * 1e3:>8.1f}"
                f"{args.batch / t_step:>10.0f}"
                + "".join(f"{pick(times[p], args.clock) * 1e3:>9.1f}" for p in parts)
                + f"{' / '.join(f'{r:.3f}' for r in rates):>22}{t_step / t_lin:>9.2f}"
            )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
