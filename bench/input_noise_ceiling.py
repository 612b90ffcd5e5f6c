"""How much accuracy the rate-coded input itself leaves on the table.

Trains classical classifiers (logistic regression and a 1-hidden-layer MLP from scikit-learn) on the *spike
counts* of rate-coded inputs — the same encoding the SQSNNs see: T steps, spike probability
min(intensity, p_max) per step — and on the clean intensities, then reports test accuracy on freshly
encoded test inputs. A spiking network that reads one T-step sample of the input has no more information than these
counts, so a good classifier of them is a practical ceiling for the README's targets.

    python bench/input_noise_ceiling.py --dataset digits
    python bench/input_noise_ceiling.py --dataset mnist-5k --hidden 1000
"""

from __future__ import annotations

import argparse
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from sqsnn.datasets import load_dataset
from sqsnn.encoders import rate_encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--T", type=int, default=5)
    parser.add_argument("--p-max", type=float, default=0.5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--copies", type=int, default=5, help="encodings of each training image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)

    data = load_dataset(args.dataset)
    gen = torch.Generator().manual_seed(args.seed)

    def counts(x: torch.Tensor) -> torch.Tensor:
        return rate_encode(x, args.T, args.p_max, gen).mean(0)

    x_train = torch.cat([counts(data.x_train) for _ in range(args.copies)]).numpy()
    y_train = data.y_train.repeat(args.copies).numpy()
    x_test = counts(data.x_test).numpy()
    y_test = data.y_test.numpy()
    print(
        f"{args.dataset}: {len(data.y_train)} train / {len(y_test)} test, rate coding T={args.T}, "
        f"p_max={args.p_max}, {args.copies} encodings per training image"
    )
    models = {
        "logistic regression": lambda: LogisticRegression(max_iter=1000),
        f"MLP ({args.hidden} hidden)": lambda: MLPClassifier(
            (args.hidden,), max_iter=100, early_stopping=True, random_state=args.seed
        ),
    }
    for name, make in models.items():
        clean = make().fit(data.x_train.numpy(), data.y_train.numpy()).score(data.x_test.numpy(), y_test)
        coded = make().fit(x_train, y_train).score(x_test, y_test)
        print(f"{name:24s} clean intensities {clean:6.2%}   rate-coded spike counts {coded:6.2%}")


if __name__ == "__main__":
    main()
