"""Single-shot inference of a trained 784-64-10 SQSNN on the ``exact`` engine and on ``aer`` circuits.

Trains the network with sqsnn's BPTT trainer on mnist-5k (or loads ``--checkpoint``), rate-encodes
``--samples`` test images once (the same input spikes for both backends), runs them layer by layer on each
backend (one job per layer per batch on ``aer``: each chunk of neurons is one parameterised circuit and
the batch is one parameter array) and prints, per backend: accuracy with its binomial standard error,
circuits, jobs, shots, qubits per circuit, qubit utilisation and wall time, then the accuracy difference
in units of its standard error and the wall-time ratio aer / exact.

Rows ``ibm-twin`` and ``braket-twin`` run the first ``--twin-samples`` of those images through the real provider
clients against the provider twins of ``tests/twins`` (started here: the IBM Quantum twin on 127.0.0.1, the
Braket twin with S3 on a moto server): ``ibm:ibm_twin_kingston`` (156-qubit calibration snapshot, ideal, one
Session per run) and ``braket:<twin gate-based QPU>`` (12 qubits, deferred layout, program sets of <= 100
executables). Each prints accuracy against the exact engine's on the same images, provider jobs / tasks per
layer, shots, wall time and the estimated cost: Braket's priced as IQM Garnet (the twin QPU is given Garnet's
per-shot price through ``SQSNN_BRAKET_PRICES``); IBM bills QPU time, not shots, so its row gives the QPU
seconds the twin's billing model charged. Wall times include the clients' HTTP round trips and polling, not a
real queue.

With ``--local-rule EPOCHS`` it then also trains digits 0-vs-1 (64-8-2 with direct synapses, T = 5) with
the local rule's ``shift`` estimator, every probability estimate run through ``aer`` with ``--shots`` shots
(:class:`backends.shift.BackendProbability`), and prints the test accuracy and submissions per epoch.

Usage: ``python bench/backend_inference.py [--checkpoint PATH] [--epochs 2] [--samples 256]
[--neurons-per-circuit 32] [--rows exact,aer,ibm-twin,braket-twin] [--twin-samples 16] [--save PATH]
[--local-rule 2 --shots 100]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from backends.execute import NetworkRun, qubit_utilisation, run_network
from backends.prices import braket_prices
from backends.registry import get_backend
from backends.shift import BackendProbability
from sqsnn.datasets import load_dataset
from sqsnn.encoders import encode
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.bptt import Checkpoint, EpochMetrics, TrainConfig, train
from sqsnn.training.local import LocalConfig, train_local

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("exact", "aer", "ibm-twin", "braket-twin")
PRICED_AS = "arn:aws:braket:eu-north-1::device/qpu/iqm/Garnet"  # the Braket twin QPU's row is priced as this device


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


def report(run: NetworkRun, y: torch.Tensor, label: str | None = None) -> float:
    acc = float((run.predictions == y).double().mean())
    se = math.sqrt(acc * (1 - acc) / len(y))
    circuits = sum(layer.circuits for layer in run.layers)
    jobs = sum(layer.jobs for layer in run.layers)
    shots = sum(layer.shots for layer in run.layers)
    widths = [layer.qubits_per_circuit for layer in run.layers]
    print(
        f"{label or run.backend:>11}: accuracy {acc:.3f} ± {se:.3f} | circuits {circuits} | jobs {jobs} "
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


@contextmanager
def ibm_twin() -> Iterator[str]:
    """The IBM Quantum twin, this process's environment pointed at it; yields the backend name."""
    from tests.twins.ibm import IBMTwin

    twin = IBMTwin().start()
    os.environ.update(twin.env())
    try:
        yield "ibm:ibm_twin_kingston"
    finally:
        twin.stop()


@contextmanager
def braket_twin() -> Iterator[tuple[str, dict[str, object]]]:
    """The Braket twin with S3 on a moto server, this process's environment pointed at it and the twin QPU
    priced as :data:`PRICED_AS`; yields (backend name, options)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.twins.braket import QPU_ARN, REGION, BraketTwin

    bucket = "sqsnn-bench-results"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    twin = BraketTwin(f"http://{host}:{port}").start()
    os.environ.update(twin.env())
    boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name=REGION).create_bucket(Bucket=bucket)
    prices = braket_prices()
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "prices.toml"
        table.write_text(
            f'as_of = "{prices.as_of}"\nper_task = {prices.per_task}\n'
            f'source = "{prices.source} ({PRICED_AS} per-shot price)"\n[per_shot]\n'
            f'"{QPU_ARN}" = {prices.per_shot[PRICED_AS]}\n'
        )
        os.environ["SQSNN_BRAKET_PRICES"] = str(table)
        try:
            yield f"braket:{QPU_ARN}", {"s3_bucket": bucket, "poll_interval_s": 0.05}
        finally:
            del os.environ["SQSNN_BRAKET_PRICES"]
            twin.stop()
            server.stop()


def twin_row(net: SQSNetwork, x: torch.Tensor, y: torch.Tensor, row: str) -> None:
    """Run ``x`` on the twin of ``row`` and on the exact engine; print the comparison and the resources."""
    exact = run_network(net, x, "exact", seed=2)
    if row == "ibm-twin":
        with ibm_twin() as name:
            run = run_network(net, x, get_backend(name), seed=3)
    else:
        with braket_twin() as (name, options):
            run = run_network(net, x, get_backend(name, options), seed=3)
    a_twin, a_exact = report(run, y, row), float((exact.predictions == y).double().mean())
    se = math.sqrt((a_exact * (1 - a_exact) + a_twin * (1 - a_twin)) / len(y))
    per_layer = [layer.jobs for layer in run.layers]
    if row == "ibm-twin":
        billed = sum(layer.qpu_seconds or 0.0 for layer in run.layers)
        cost = f"no dollar estimate (IBM bills QPU time): {billed:.1f} QPU s billed by the twin's model"
    else:
        priced_as = PRICED_AS.rsplit("/", 1)[-1]
        cost = f"estimated ${run.estimate.cost_usd:.2f} at {priced_as}'s prices ({run.estimate.price_note})"
    print(
        f"{row:>11}: exact on the same {len(y)} images {a_exact:.3f}, difference {a_twin - a_exact:+.3f} = "
        f"{(a_twin - a_exact) / max(se, 1e-12):+.2f} standard errors | provider jobs/tasks per layer {per_layer} | "
        f"{cost}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="load a trained SQSNetwork instead of training")
    parser.add_argument("--save", help="save the trained network here")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--neurons-per-circuit", type=int, default=32)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows among {', '.join(ROWS)}")
    parser.add_argument("--twin-samples", type=int, default=16, help="images (of --samples) run on each twin")
    parser.add_argument("--local-rule", type=int, default=0, metavar="EPOCHS")
    parser.add_argument("--shots", type=int, default=100, help="shots per estimate for --local-rule")
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if unknown := sorted(set(rows) - set(ROWS)):
        parser.error(f"--rows: unknown rows {unknown}; choose among {', '.join(ROWS)}")
    torch.manual_seed(0)
    net = trained_network(args)
    data = load_dataset("mnist-5k", limit_test=args.samples)
    x = encode(data.x_test, data.kind, args.T, 0.5, torch.Generator().manual_seed(1))
    y = data.y_test
    print(f"{len(y)} test images, T={args.T}, single shot, mode {net.config.mode}")
    if "exact" in rows:
        exact = run_network(net, x, "exact", seed=2)
        a_exact = report(exact, y)
    if "aer" in rows:
        aer = run_network(net, x, get_backend("aer", {"neurons_per_circuit": args.neurons_per_circuit}), seed=3)
        a_aer = report(aer, y)
    if "exact" in rows and "aer" in rows:
        se = math.sqrt((a_exact * (1 - a_exact) + a_aer * (1 - a_aer)) / len(y))
        print(
            f"accuracy difference aer - exact: {a_aer - a_exact:+.3f} = {(a_aer - a_exact) / max(se, 1e-12):+.2f} "
            f"standard errors; wall-time ratio aer / exact: {aer.wall_s / exact.wall_s:.0f}x"
        )
    for row in ("ibm-twin", "braket-twin"):
        if row in rows:
            twin_row(net, x[:, : args.twin_samples], y[: args.twin_samples], row)
    if args.local_rule:
        local_rule_through_aer(args.local_rule, args.shots)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # tests.twins
    main()
