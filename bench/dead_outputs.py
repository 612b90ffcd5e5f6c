"""Dead neurons of an SQSNN during BPTT training: which outputs stop receiving gradient, and when.

Trains a 784-1000-10 SQSNN (``quantum`` mode) on a stratified subset of an IDX dataset with a 10 % validation
split and, before training and after every epoch, measures on up to 1,000 validation images (one rate
encoding, one sampled run):

* per layer, the fraction of neurons whose current z is <= 0 at every step of every image (dead: the
  embedding max(z, 0) passes no gradient to their weights);
* per output neuron, the share of (step, image) pairs with z > 0 (an output near 0 is nearly dead);
* how many validation images each class is predicted for, and the output layer's ``theta_in``.

Usage (the diagnosis behind ``NetworkConfig.output_theta_in``, docs/results-full-v2/notes.md)::

    SQSNN_DATA_DIR=<data> python bench/dead_outputs.py --seed 0 --limit 10000 --epochs 3 [--output-theta-in -1.5708]
"""

from __future__ import annotations

import argparse

import torch

from sqsnn.datasets import Dataset, load_dataset
from sqsnn.encoders import encode
from sqsnn.network import NetworkConfig, SQSLayer, SQSNetwork
from sqsnn.training.bptt import EpochMetrics, TrainConfig, train


def describe(net: SQSNetwork, data: Dataset, config: TrainConfig, n_images: int = 1000) -> str:
    """One line: dead fraction per layer, the outputs' share of z > 0, predictions per class, output theta_in."""
    assert data.x_val is not None
    gen = torch.Generator().manual_seed(123)
    x = encode(torch.as_tensor(data.x_val[:n_images]), data.kind, config.T, config.p_max, gen).to(torch.float64)
    with torch.no_grad():
        out = net(x, gen)
        below, dead, live = x, [], torch.empty(0)
        for index, layer in enumerate(net.layers):
            assert isinstance(layer, SQSLayer)
            z = layer.currents(below)  # (T, B, n)
            dead.append(float((z.amax(dim=(0, 1)) <= 0).double().mean()))
            live = (z > 0).double().mean(dim=(0, 1))
            below = out.spikes[index].to(torch.float64)
        predicted = torch.bincount(net.predict(out), minlength=data.n_classes).tolist()
        theta_in = net.layers[-1].theta_in.tolist()  # type: ignore[operator]
    return (
        f"dead per layer {' / '.join(f'{d:.3f}' for d in dead)}; outputs' share of z > 0 "
        f"{' '.join(f'{v:.2f}' for v in live.tolist())}; predictions per class {predicted}; output theta_in "
        f"{' '.join(f'{t:.2f}' for t in theta_in)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=10000, help="training images before the validation split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-scaling", default="none")
    parser.add_argument("--logit-scale", type=float, default=5.0)
    parser.add_argument("--loss", default="counts")
    parser.add_argument("--embedding-leak", type=float, default=0.0)
    parser.add_argument("--output-theta-in", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, limit_train=args.limit, val_fraction=0.1)
    net = SQSNetwork(
        NetworkConfig(
            sizes=[data.n_features, 1000, data.n_classes],
            seed=args.seed,
            embedding_leak=args.embedding_leak,
            output_theta_in=args.output_theta_in,
        )
    )
    config = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        lr_scaling=args.lr_scaling,
        logit_scale=args.logit_scale,
        loss=args.loss,
        seed=args.seed,
    )
    print(f"init: {describe(net, data, config)}", flush=True)

    def on_epoch(metrics: EpochMetrics, _checkpoint: object) -> None:
        print(f"epoch {metrics.epoch}: val {metrics.val_accuracy:.4f}; {describe(net, data, config)}", flush=True)

    result = train(net, data, config, on_epoch=on_epoch)
    print(f"kept epoch {result.best_epoch}: validation accuracy {result.val_accuracy:.4f}")


if __name__ == "__main__":
    main()
