"""How much of a model's error is the noise of one spike train: single-shot accuracy against pooled runs.

Trains the SQSNN with a dataset's defaults (``sqsnn.training.defaults``) and the LIF SNN parameter-matched to
it with the same settings, at each presentation length T given, keeping the best validation epoch. Then, on
the validation split (nothing here looks at the test split), it runs every trained model ``--runs`` times with
independent input encodings and spike samples and prints, per model and T:

* single-shot accuracy: mean ± standard deviation over the runs (what every results table reports);
* pooled accuracy: the prediction from all runs' output spike trains laid end to end, i.e. the counts summed
  over the runs (ties to the highest mean probability, as a single run): the accuracy the trained function
  would reach if the readout's sampling noise were averaged away;
* the gap between the two, in points: the part of the error that is readout noise, not the learned function.

Usage (the diagnosis behind digits' T = 10, ``experiments/tune-digits-steps.toml``; its training is the
experiment runner's cell with the same settings, one thread)::

    python bench/readout_noise.py --dataset digits --steps 5,10 --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sqsnn.baselines.lif import LIFConfig, LIFNetwork, matched_hidden_sizes
from sqsnn.datasets import Dataset, load_dataset
from sqsnn.encoders import encode
from sqsnn.network import NetworkConfig, SpikingNetwork, SQSNetwork, predict_from_output
from sqsnn.training.bptt import TrainConfig, train
from sqsnn.training.defaults import defaults_for


@torch.no_grad()
def readout(model: SpikingNetwork, data: Dataset, T: int, p_max: float, runs: int) -> tuple[list[float], float]:
    """Single-shot validation accuracies of ``runs`` independent runs, and the accuracy of their pooled trains."""
    assert data.x_val is not None and data.y_val is not None
    model.train(False)
    dtype = next(model.parameters()).dtype  # the training precision (float32 for the 28x28 defaults)
    x, y = torch.as_tensor(data.x_val).to(dtype), torch.as_tensor(data.y_val)
    single, spikes, probs = [], [], []
    for run in range(runs):
        gen = torch.Generator().manual_seed(10_000 + run)
        out = model(encode(x, data.kind, T, p_max, gen), gen)
        single.append(float((model.predict(out) == y).double().mean()))
        spikes.append(out.spikes[-1])
        probs.append(out.probs[-1])
    pooled = predict_from_output(torch.cat(spikes), torch.cat(probs))  # (runs * T, B, C) -> (B,)
    return single, float((pooled == y).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--steps", default="5,10", help="comma-separated presentation lengths T")
    parser.add_argument("--runs", type=int, default=20, help="independent single-shot runs per model")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, val_fraction=0.1)
    preset = defaults_for(args.dataset)
    sizes = [data.n_features, *preset.hidden, data.n_classes]
    assert data.y_val is not None
    print(
        f"{args.dataset}: {len(data.y_train)} train / {len(data.y_val)} validation images, seed {args.seed}, "
        f"{args.runs} runs per model; accuracy on the validation split"
    )
    columns = ("model", "T", "kept", "single-shot %", "pooled %", "noise (points)", "train s")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (6, 3, 5, 15, 9, 15, 8), strict=True)))
    for T in (int(t) for t in args.steps.split(",")):
        config = TrainConfig(**{**preset.train, "T": T, "seed": args.seed})
        sqsnn = SQSNetwork(NetworkConfig(sizes=sizes, seed=args.seed, **preset.network))
        lif_sizes = matched_hidden_sizes(sizes, sqsnn.num_parameters(), bias=LIFConfig.bias)
        for name, model in (("SQSNN", sqsnn), ("LIF", LIFNetwork(LIFConfig(sizes=lif_sizes, seed=args.seed)))):
            start = time.perf_counter()
            result = train(model, data, config)
            seconds = time.perf_counter() - start
            single, pooled = readout(model, data, T, config.p_max, args.runs)
            mean, sd = 100 * statistics.mean(single), 100 * statistics.stdev(single)
            print(
                f"{name:<6} {T:>3} {result.best_epoch:>5} {mean:>8.2f} ± {sd:4.2f} {100 * pooled:>9.2f} "
                f"{100 * pooled - mean:>15.2f} {seconds:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
