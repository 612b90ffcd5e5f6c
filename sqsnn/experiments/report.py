"""Markdown table and PNG figures rebuilt from an experiment's CSV files (:mod:`sqsnn.experiments.records`).

Rows group the cells that differ only in their seed: validation and test accuracy are the mean ± sample
standard deviation over seeds (± 0 with one seed; "–" where a cell had no validation split), spike rates
are per layer (spikes per neuron per step on the test set, mean over seeds). Each cell's epoch was chosen
on its validation split (the epoch with the best validation accuracy; the last epoch without one) and its
test split evaluated once with that epoch's weights.
Figures (``figures/``): held-out accuracy per epoch for each dataset (validation where the cells had one,
else test; mean over seeds), and for the first seed of every row a spike raster of test sample 0 and a
histogram of per-neuron spike rates per layer.
A hand-written ``notes.md`` in the results directory (observations, caveats) is appended verbatim.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from sqsnn.experiments.records import CELLS, EPOCHS, NEURONS, RASTER, read_rows, split_numbers

GroupKey = tuple[str, str, str, str]  # dataset, label, mode, method


def _group_key(row: dict[str, str]) -> GroupKey:
    return row["dataset"], row["label"], row["mode"], row["method"]


def _slug(key: tuple[str, ...]) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in "_".join(key))


def _training(row: dict[str, str]) -> str:
    text = "BPTT" if row["method"] == "bptt" else f"local ({row['estimator']})"
    return text + (", direct synapses" if row["direct"] == "True" else "")


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _accuracy_figure(path: Path, dataset: str, curves: dict[str, dict[int, list[float]]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_epoch in sorted(curves.items()):
        epochs = sorted(by_epoch)
        ax.plot(epochs, [100 * statistics.fmean(by_epoch[e]) for e in epochs], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title(f"{dataset}: validation (else test) accuracy per epoch (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _raster_figure(path: Path, title: str, sizes: list[int], events: set[tuple[int, int, int]], T: int) -> None:
    layers = len(sizes) - 1
    fig, axes = plt.subplots(1, layers, figsize=(3.5 * layers, 3.5), squeeze=False)
    for layer in range(layers):
        ax = axes[0][layer]
        pts = sorted((t, n) for (lay, t, n) in events if lay == layer)
        if pts:
            ax.scatter([t + 1 for t, _ in pts], [n for _, n in pts], s=6, marker="|", color="black")
        ax.set_xlim(0.5, T + 0.5)
        ax.set_ylim(-0.5, sizes[layer + 1] - 0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("neuron")
        ax.set_title(f"layer {layer + 1} ({sizes[layer + 1]} neurons)", fontsize=9)
    fig.suptitle(f"{title}: spikes of test sample 0", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rates_figure(path: Path, title: str, rates: dict[int, list[float]]) -> None:
    layers = sorted(rates)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.5 * len(layers), 3.2), squeeze=False)
    for i, layer in enumerate(layers):
        ax = axes[0][i]
        ax.hist(rates[layer], bins=20, range=(0.0, 1.0), color="tab:blue")
        ax.set_xlabel("spike rate (spikes / step)")
        ax.set_ylabel("neurons")
        ax.set_title(f"layer {layer + 1}", fontsize=9)
    fig.suptitle(f"{title}: per-neuron spike rates on the test set", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(rows: list[dict[str, str]]) -> tuple[str, str, str]:
    """Validation and test accuracy (mean ± std, %) and mean per-layer spike rates of one group of cells."""
    val_accs = [float(r["val_accuracy"]) for r in rows if r.get("val_accuracy")]
    rate_lists = [split_numbers(r["spike_rates"]) for r in rows if r["spike_rates"]]
    rates = [statistics.fmean(col) for col in zip(*rate_lists, strict=True)] if rate_lists else []
    test = _mean_std([float(r["test_accuracy"]) for r in rows])
    return _mean_std(val_accs), test, " / ".join(f"{v:.3f}" for v in rates)


def _memory_ablation(groups: dict[GroupKey, list[dict[str, str]]]) -> list[str]:
    """A table of the SQSNN memory modes side by side, for every dataset, layer sizes, training method,
    estimator and synapse layout that ran more than one mode (empty when none did)."""
    Setting = tuple[str, str, str, str, str]
    by_setting: dict[Setting, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for (dataset, _, mode, method), rows in groups.items():
        first = rows[0]
        if first["kind"] == "sqsnn":
            by_setting[(dataset, first["sizes"], method, first["estimator"], first["direct"])][mode].extend(rows)
    settings = {k: v for k, v in sorted(by_setting.items()) if len(v) > 1}
    if not settings:
        return []
    lines = [
        "## Memory ablation",
        "",
        "SQSNN cells that differ only in the memory mode: quantum memory, memoryless (memory reset every step) "
        "and the reference code's classical last-spike memory (official).",
        "",
        "| Dataset | Layer sizes | Training | Memory | Val accuracy (%) | Test accuracy (%) | Seeds | "
        "Spike rate per layer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (dataset, sizes, *_), modes in settings.items():
        for mode, rows in sorted(modes.items()):
            val, test, rates = _summary(rows)
            seeds = ", ".join(sorted({r["seed"] for r in rows}, key=int))
            size_text = "-".join(str(int(v)) for v in split_numbers(sizes))
            lines.append(
                f"| {dataset} | {size_text} | {_training(rows[0])} | {mode} | {val} | {test} | {seeds} | {rates} |"
            )
    return [*lines, ""]


def _parameter_counts(groups: dict[GroupKey, list[dict[str, str]]]) -> list[str]:
    """Every model's trainable-parameter count per dataset, relative to the dataset's largest SQSNN without
    direct synapses (the one parameter-matched baselines are matched to)."""
    models: dict[str, dict[tuple[str, str, str], int]] = defaultdict(dict)
    plain_sqsnn: dict[str, list[int]] = defaultdict(list)
    for (dataset, label, _, _), rows in groups.items():
        first = rows[0]
        models[dataset][(label, first["kind"], first["sizes"])] = int(first["num_parameters"])
        if first["kind"] == "sqsnn" and first["direct"] != "True":
            plain_sqsnn[dataset].append(int(first["num_parameters"]))
    lines = [
        "## Parameter counts",
        "",
        "Trainable scalars of every model (SQSNN: weights, biases if any, three angles per neuron; LIF: weights "
        "and biases; QLIF: two weight matrices). A LIF network with `match_parameters` has the hidden width "
        "whose count is closest to the named SQSNN's.",
        "",
        "| Dataset | Model | Kind | Layer sizes | Params | Params / SQSNN |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, counts in sorted(models.items()):
        reference = max(plain_sqsnn[dataset], default=None)
        for (label, kind, sizes), n in sorted(counts.items()):
            ratio = f"{n / reference:.4f}" if reference else "–"
            size_text = "-".join(str(int(v)) for v in split_numbers(sizes))
            lines.append(f"| {dataset} | {label} | {kind} | {size_text} | {n} | {ratio} |")
    return [*lines, ""]


def report(results_dir: Path | str, output: Path | str | None = None) -> Path:
    """Write the markdown table (``output``, default ``<results_dir>/results.md``) and the figures.

    Returns the path of the markdown file. Raises FileNotFoundError when ``cells.csv`` is missing.
    """
    results_dir = Path(results_dir)
    if not (results_dir / CELLS).is_file():
        raise FileNotFoundError(f"no {CELLS} in {results_dir}: run `sqsnn experiment run CONFIG` first")
    md_path = Path(output) if output is not None else results_dir / "results.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    fig_dir = results_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    cells = list({row["key"]: row for row in read_rows(results_dir / CELLS)}.values())
    by_key = {row["key"]: row for row in cells}
    epochs = {(r["key"], int(r["epoch"])): r for r in read_rows(results_dir / EPOCHS) if r["key"] in by_key}
    neuron_rates: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in read_rows(results_dir / NEURONS):
        neuron_rates[r["key"]][(int(r["layer"]), int(r["neuron"]))] = float(r["rate"])
    events: dict[str, set[tuple[int, int, int]]] = defaultdict(set)
    for r in read_rows(results_dir / RASTER):
        events[r["key"]].add((int(r["layer"]), int(r["step"]), int(r["neuron"])))

    groups: dict[GroupKey, list[dict[str, str]]] = defaultdict(list)
    for row in cells:
        groups[_group_key(row)].append(row)

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, md_path.parent)).as_posix()

    lines = [
        "# Results",
        "",
        "Generated by `sqsnn experiment report` from the CSV files in "
        f"`{results_dir.as_posix()}`. Accuracy: mean ± standard deviation over seeds, single-shot. "
        "Each cell keeps the epoch with the best accuracy on its validation split (a seeded stratified part "
        "of the training split; Best epoch) and evaluates the test split once with those weights; cells "
        "without a validation split (Val –) keep their last epoch. Spike rate: spikes per neuron per step "
        "on the test set, per layer. † the cell's time budget stopped training early.",
        "",
        "| Dataset | Model | Memory | Training | Layer sizes | Params | Val accuracy (%) | Test accuracy (%) | "
        "Seeds | Spike rate per layer | Epochs | Best epoch | s / cell | Figures | Command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for key in sorted(groups):
        rows = sorted(groups[key], key=lambda r: int(r["seed"]))
        first = rows[0]
        accs = [float(r["test_accuracy"]) for r in rows]
        val_accs = [float(r["val_accuracy"]) for r in rows if r.get("val_accuracy")]
        rate_lists = [split_numbers(r["spike_rates"]) for r in rows if r["spike_rates"]]
        rates = [statistics.fmean(col) for col in zip(*rate_lists, strict=True)] if rate_lists else []
        budget = " †" if any(r["status"] == "budget" for r in rows) else ""
        sizes = [int(s) for s in split_numbers(first["sizes"])]
        name = f"{first['label']} [{first['mode']}, {_training(first)}]"
        slug = _slug(key)
        raster_path, rates_path = fig_dir / f"raster_{slug}.png", fig_dir / f"rates_{slug}.png"
        T = max((t for _, t, _ in events[first["key"]]), default=0) + 1
        _raster_figure(raster_path, name, sizes, events[first["key"]], T)
        per_layer: dict[int, list[float]] = defaultdict(list)
        for (layer, _), rate in sorted(neuron_rates[first["key"]].items()):
            per_layer[layer].append(rate)
        _rates_figure(rates_path, name, dict(per_layer))
        for r in rows:
            for (k, e), er in epochs.items():
                if k == r["key"]:
                    held_out = er.get("val_accuracy") or er["test_accuracy"]
                    curves[key[0]][name][e].append(float(held_out))
        lines.append(
            f"| {key[0]} | {first['label']} | {first['mode']} | {_training(first)} | "
            f"{'-'.join(map(str, sizes))} | {first['num_parameters']} | {_mean_std(val_accs)} | "
            f"{_mean_std(accs)}{budget} | {', '.join(r['seed'] for r in rows)} | "
            f"{' / '.join(f'{v:.3f}' for v in rates)} | {first['epochs']} | "
            f"{', '.join(r.get('best_epoch') or '–' for r in rows)} | "
            f"{statistics.fmean(float(r['seconds']) for r in rows):.1f} | "
            f"[raster]({link(raster_path)}), [rates]({link(rates_path)}) | `{first['command']}` |"
        )
    lines.append("")
    lines += _memory_ablation(groups)
    lines += _parameter_counts(groups)
    for dataset, by_name in sorted(curves.items()):
        path = fig_dir / f"accuracy_{_slug((dataset,))}.png"
        _accuracy_figure(path, dataset, by_name)
        lines.append(f"![{dataset}: test accuracy per epoch]({link(path)})")
        lines.append("")
    notes = results_dir / "notes.md"
    if notes.is_file():
        lines.append(notes.read_text().rstrip())
        lines.append("")
    md_path.write_text("\n".join(lines))
    return md_path
