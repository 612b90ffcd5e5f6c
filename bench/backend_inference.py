"""Single-shot inference of a trained 784-64-10 SQSNN on the ``exact`` engine and on ``aer`` circuits.

Trains the network with sqsnn's BPTT trainer on mnist-5k (or loads ``--checkpoint``), rate-encodes
``--samples`` test images once (the same input spikes for both backends), runs them layer by layer on each
backend (one job per layer per batch on ``aer``: each chunk of neurons is one parameterised circuit and
the batch is one parameter array) and prints, per backend: accuracy with its binomial standard error,
circuits, jobs, shots, qubits per circuit, qubit utilisation and wall time, then the accuracy difference
in units of its standard error and the wall-time ratio aer / exact.

With ``--local-rule EPOCHS`` it then also trains digits 0-vs-1 (64-8-2 with direct synapses, T = 5) with
the local rule's ``shift`` estimator, every probability estimate run through ``aer`` with ``--shots`` shots
(:class:`backends.shift.BackendProbability`), and prints the test accuracy and submissions per epoch.

Usage: ``python bench/backend_inference.py [--checkpoint PATH] [--epochs 2] [--samples 256]
[--neurons-per-circuit 32] [--save PATH] [--local-rule 2 --shots 100]``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from backends.execute import NetworkRun, qubit_utilisation, run_network
from backends.registry import get_backend
from backends.shift import BackendProbability
from sqsnn.datasets import load_dataset
from sqsnn.encoders import encode
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.bptt import Checkpoint, EpochMetrics, TrainConfig, train
from sqsnn.training.local import LocalConfig, train_local


def trained_network(args: argparse.Namespace) -> SQSNetwork:
    if args.checkpoint:
        net, _ = SQSNetwork.load(args.checkpoint)
        if net.config.sizes != [784, 64, 10]:
            print(f"note: checkpoint has sizes {net.config.sizes}")
        return net
    data = load_dataset("mnist-5k")
    net = SQSNetwork(NetworkConfig(sizes=[784, 64, 10], mode="quantum", seed=0))
    started = time.perf_counter()
    result = train(net, data, TrainConfig(epochs=args.epochs, batch_size=64, T=args.T, seed=0))
    print(
        f"trained 784-64-10 on mnist-5k with BPTT: {args.epochs} epochs, {time.perf_counter() - started:.1f} s, "
        f"exact test accuracy {result.test_accuracy:.3f}"
    )
    if args.save:
        net.save(args.save)
    return net


def report(run: NetworkRun, y: torch.Tensor) -> float:
    acc = float((run.predictions == y).double().mean())
    se = math.sqrt(acc * (1 - acc) / len(y))
    circuits = sum(layer.circuits for layer in run.layers)
    jobs = sum(layer.jobs for layer in run.layers)
    shots = sum(layer.shots for layer in run.layers)
    widths = [layer.qubits_per_circuit for layer in run.layers]
    print(
        f"{run.backend:>6}: accuracy {acc:.3f} ± {se:.3f} | circuits {circuits} | jobs {jobs} "
        f"(per layer {[layer.jobs for layer in run.layers]}) | shots {shots} | qubits/circuit per layer {widths} "
        f"| qubit utilisation {qubit_utilisation(run):.2f} | wall {run.wall_s:.2f} s"
    )
    return acc


def local_rule_through_aer(epochs: int, shots: int) -> None:
    data = load_dataset("digits", classes=[0, 1])
    net = SQSNetwork(NetworkConfig(sizes=[64, 8, 2], mode="quantum", direct=True, seed=0))
    prob = BackendProbability(get_backend("aer"), shots=shots, seed=1)
    started = time.perf_counter()

    def show(m: EpochMetrics, _: Checkpoint) -> None:
        print(
            f"local rule (shift, {shots} shots via aer) digits 0-vs-1 epoch {m.epoch}: test accuracy "
            f"{m.test_accuracy:.3f}, {prob.submissions} submissions, {time.perf_counter() - started:.0f} s"
        )

    config = LocalConfig(estimator="shift", epochs=epochs, batch_size=16, T=5, seed=0, shots=shots)
    train_local(net, data, config, probability=prob, on_epoch=show)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="load a trained SQSNetwork instead of training")
    parser.add_argument("--save", help="save the trained network here")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--neurons-per-circuit", type=int, default=32)
    parser.add_argument("--local-rule", type=int, default=0, metavar="EPOCHS")
    parser.add_argument("--shots", type=int, default=100, help="shots per estimate for --local-rule")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = trained_network(args)
    data = load_dataset("mnist-5k", limit_test=args.samples)
    x = encode(data.x_test, data.kind, args.T, 0.5, torch.Generator().manual_seed(1))
    y = data.y_test
    print(f"{len(y)} test images, T={args.T}, single shot, mode {net.config.mode}")
    exact = run_network(net, x, "exact", seed=2)
    aer = run_network(net, x, get_backend("aer", {"neurons_per_circuit": args.neurons_per_circuit}), seed=3)
    a_exact, a_aer = report(exact, y), report(aer, y)
    se = math.sqrt((a_exact * (1 - a_exact) + a_aer * (1 - a_aer)) / len(y))
    print(
        f"accuracy difference aer - exact: {a_aer - a_exact:+.3f} = {(a_aer - a_exact) / max(se, 1e-12):+.2f} "
        f"standard errors; wall-time ratio aer / exact: {aer.wall_s / exact.wall_s:.0f}x"
    )
    if args.local_rule:
        local_rule_through_aer(args.local_rule, args.shots)


if __name__ == "__main__":
    main()
