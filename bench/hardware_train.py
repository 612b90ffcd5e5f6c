"""Local-rule training with the backend in the loop (``backends.training``): digits 0 vs 1, 64-8-2 with direct
synapses, T = 5, seed 0.

Rows: ``engine`` is the in-process trainer (exact engine forward, binomial shot noise on exact probabilities:
``sqsnn.training.local`` without hooks), the reference of the wall-time ratio; every other row trains with
forward spikes and the estimator's shot-based probabilities measured on that backend (``exact`` runs the same
submissions through the exact backend). Printed per row: test accuracy after the last epoch (exact engine)
and measured on the backend itself (``acc@be``, single shot; its shots are counted too), epochs, shots,
submissions, tasks, estimated cost, impossible readouts, wall time of training, training samples/s and the
wall-time ratio to ``engine``.

``--select`` first scores candidate configurations on a validation part of the training split (a seeded
quarter of it, the rest trains) on the first circuit backend and prints their validation accuracies; the
test split is not used for that choice.

``--twins ibm,braket`` adds rows on the provider twins (tests/twins: real qiskit-ibm-runtime / amazon-braket-sdk
clients over HTTP to loopback servers that simulate the devices; started here, with a moto S3 for Braket's
results): ``ibm:ibm_twin_kingston`` and ``braket:`` SV1's ARN. A twin is a simulator behind the provider's API,
not hardware: its rows measure the provider round trips and the client libraries, not a QPU's queue, noise or
speed. These rows run the hooks in-process (as every row here); through the service (recorded submissions,
database, worker) see tests/service/test_service_train_twins.py, which prints its figures.

Usage: ``PYTHONPATH=. python bench/hardware_train.py [--backends aer,exact] [--twins ibm,braket] [--epochs 3]
[--shots 32] [--estimator chain] [--lr 0.03] [--batch-size 16] [-T 5] [--limit-train N] [--limit-test N] [--select]``;
``ibm-local:fake_kingston`` and ``braket-local:sv`` are accepted too (slow: noisy density-matrix / mid-circuit
simulation), the Braket twin too (it simulates every executable of a program set one by one: use ``--estimator
exact``, ``-T 3`` and a small ``--limit-train``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch

from backends.registry import get_backend
from backends.training import backend_accuracy, backend_training
from sqsnn.datasets import Dataset, load_dataset
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.local import LocalConfig, train_local


def network() -> SQSNetwork:
    return SQSNetwork(NetworkConfig(sizes=[64, 8, 2], mode="quantum", direct=True, seed=0))


def validation_split(data: Dataset, seed: int = 123) -> Dataset:
    """Train on a seeded three quarters of the training side; its last quarter replaces the test split."""
    perm = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))
    cut = len(perm) * 3 // 4
    fit, held = perm[:cut], perm[cut:]
    return replace(
        data,
        x_train=data.x_train[fit],
        y_train=data.y_train[fit],
        x_test=data.x_train[held],
        y_test=data.y_train[held],
    )


@contextlib.contextmanager
def twins(kinds: list[str]) -> Iterator[dict[str, dict[str, Any]]]:
    """Start the provider twins of ``kinds`` (``ibm``, ``braket``), point this process's environment at them,
    and yield their backend names with the options to use; stop them afterwards."""
    if not kinds:
        yield {}
        return
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.twins.braket import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, SIM_ARN, BraketTwin
    from tests.twins.braket_plugin import BUCKET
    from tests.twins.ibm import IBMTwin

    with contextlib.ExitStack() as stack:
        backends: dict[str, dict[str, Any]] = {}
        env: dict[str, str] = {}
        if "ibm" in kinds:
            ibm = IBMTwin().start()
            stack.callback(ibm.stop)
            env |= ibm.env()
            backends["ibm:ibm_twin_kingston"] = {}
        if "braket" in kinds:
            s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            s3.start()
            stack.callback(s3.stop)
            host, port = s3.get_host_and_port()
            url = f"http://{host}:{port}"
            keys = {"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": SECRET_ACCESS_KEY}
            boto3.client("s3", endpoint_url=url, region_name=REGION, **keys).create_bucket(Bucket=BUCKET)
            braket = BraketTwin(url).start()
            stack.callback(braket.stop)
            env |= braket.env()
            backends[f"braket:{SIM_ARN}"] = {"s3_bucket": BUCKET, "poll_interval_s": 0.05}
        os.environ.update(env)
        yield backends


def run(name: str, data: Dataset, config: LocalConfig, options: dict[str, Any] | None = None) -> dict[str, object]:
    """Train once on ``name`` (``engine``: the in-process trainer) and return the row's figures."""
    net = network()
    started = time.perf_counter()
    if name == "engine":
        result = train_local(net, data, config)
        wall = time.perf_counter() - started
        spend, impossible, on_backend = None, 0, float("nan")
    else:
        hw = backend_training(get_backend(name, options or None), config, "quantum", seed=config.seed)
        result = train_local(net, data, config, **hw.hooks())
        wall = time.perf_counter() - started
        generator = torch.Generator().manual_seed(1)
        evaluation = backend_accuracy(
            hw, net, data.x_test, data.y_test, data.kind, T=config.T, p_max=config.p_max, generator=generator, seed=2
        )
        spend, impossible = hw.meter.reading(), hw.readout.impossible + evaluation.impossible_spikes
        on_backend = evaluation.accuracy
    return {
        "backend": name,
        "accuracy": result.test_accuracy,
        "on_backend": on_backend,
        "epochs": config.epochs,
        "shots": spend.shots if spend else 0,
        "submissions": spend.submissions if spend else 0,
        "tasks": spend.tasks if spend else 0,
        "cost_usd": spend.cost_usd if spend else 0.0,
        "impossible": impossible,
        "wall_s": wall,
        "samples_per_s": len(data.y_train) * config.epochs * config.samples / wall,
    }


def select(data: Dataset, base: LocalConfig, backend: str) -> None:
    """Print the validation accuracy of each candidate configuration on ``backend``."""
    held = validation_split(data)
    print(f"selection on {backend}: {len(held.y_train)} training images, {len(held.y_test)} validation images")
    candidates = [
        replace(base, estimator="chain", shots=16, lr=0.01),
        replace(base, estimator="chain", shots=32, lr=0.01),
        replace(base, estimator="shift", shots=32, lr=0.01),
        replace(base, estimator="chain", shots=32, lr=0.03),
    ]
    for config in candidates:
        row = run(backend, held, config)
        print(
            f"  estimator={config.estimator} shots={config.shots} lr={config.lr} epochs={config.epochs}: "
            f"validation accuracy {row['accuracy']:.3f} ({row['wall_s']:.0f} s)"
        )


def short(name: str) -> str:
    """A backend name for the table: a Braket device ARN shortened to its last path part."""
    kind, _, target = name.partition(":")
    return f"{kind}:{target.rsplit('/', 1)[-1]}" if target.startswith("arn:") else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="exact,aer")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shots", type=int, default=32)
    parser.add_argument("--estimator", default="chain", choices=["shift", "chain", "official", "exact"])
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--select", action="store_true")
    parser.add_argument("--twins", default="", help="provider twins to add rows for: ibm, braket")
    parser.add_argument("-T", type=int, default=5)
    parser.add_argument("--limit-train", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--limit-test", type=int, default=None, help="test images (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(  # --select holds out its own part
        "digits", classes=[0, 1], val_fraction=0.0, limit_train=args.limit_train, limit_test=args.limit_test
    )
    config = LocalConfig(
        estimator=args.estimator,
        epochs=args.epochs,
        batch_size=args.batch_size,
        T=args.T,
        shots=args.shots,
        lr=args.lr,
        seed=0,
    )
    backends = [b for b in args.backends.split(",") if b]
    if args.select:
        select(data, config, next((b for b in backends if b != "exact"), "aer"))
    print(
        f"digits 0 vs 1: {len(data.y_train)} training / {len(data.y_test)} test images, 64-8-2 + direct, "
        f"T = {config.T}, estimator {config.estimator}, {config.shots} shots, batch {config.batch_size}, lr {config.lr}"
    )
    with twins([k for k in args.twins.split(",") if k]) as twin_backends:
        rows = [run(name, data, config) for name in ["engine", *backends]]
        rows += [run(name, data, config, options) for name, options in twin_backends.items()]
    reference = float(rows[0]["wall_s"])  # type: ignore[arg-type]
    header = (
        f"{'backend':26} {'acc':>6} {'acc@be':>6} {'epochs':>6} {'shots':>10} {'subm':>6} {'tasks':>6} {'cost$':>6} "
        f"{'imposs':>6} {'wall s':>8} {'samp/s':>8} {'x engine':>8}"
    )
    print(header)
    for row in rows:
        cost = row["cost_usd"]
        print(
            f"{short(str(row['backend'])):26} {row['accuracy']:6.3f} {row['on_backend']:6.3f} {row['epochs']:6d} "
            f"{row['shots']:10d} {row['submissions']:6d} {row['tasks']:6d} "
            f"{'n/a' if cost is None else f'{cost:.2f}':>6} "
            f"{row['impossible']:6d} {row['wall_s']:8.1f} {row['samples_per_s']:8.1f} "
            f"{float(row['wall_s']) / reference:8.1f}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
