"""Markdown tables and PNG figures rebuilt from one or more experiments' CSV files
(:mod:`sqsnn.experiments.records`).

Rows group the cells of one results directory that differ only in their seed: validation and test accuracy
are the mean ± sample standard deviation over seeds (± 0 with one seed; "–" where a cell had no validation
split), spike rates are per layer (spikes per neuron per step on the test set, mean over seeds). Each cell's
epoch was chosen on its validation split (the epoch with the best validation accuracy; the last epoch
without one) and its test split evaluated once with that epoch's weights.

Sections after the main table, each present when the cells allow it:

* **Memory ablation** — SQSNN cells that differ only in the memory mode (same results directory, dataset,
  sizes, training method, estimator, synapse layout and training options); table and bar chart.
* **Local-rule sample counts** — local-rule cells that differ only in forward samples M, SPSA directions K
  and shots S; table (accuracy and seconds per epoch) and one panel per count.
* **Spike-rate penalty** — BPTT cells whose configuration sets ``rate_penalty`` (lambda); table and the
  accuracy vs mean spike rate curve per model (the Pareto trade-off).
* **SQSNN vs parameter-matched LIF** — every LIF row with ``match_parameters`` next to the SQSNN rows of the
  same directory and dataset trained with identical training options, and the difference in points.
* **Parameter counts** — every architecture's trainable scalars.

Training options (M, K, S, lambda, ``match_parameters``) are read from each cell's configuration file (the
``config`` column); a cell whose file is gone counts as having the defaults.

Figures of rows (a spike raster of test sample 0 and a histogram of per-neuron spike rates for the first
seed of every row, held-out accuracy per epoch per dataset) belong to their results directory: a report
of one directory draws them in ``<results_dir>/figures``; a report combining several directories links to
the ones each directory's own report drew and draws only the section figures, in ``figures_dir``.
A hand-written ``notes.md`` in a results directory (observations, caveats) is appended verbatim.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from sqsnn.experiments.config import ConfigError, ModelSpec, load_config
from sqsnn.experiments.records import CELLS, EPOCHS, NEURONS, RASTER, read_rows, split_numbers
from sqsnn.training.local import LocalConfig

GroupKey = tuple[str, str, str, str, str]  # source (results directory), dataset, label, mode, method
Groups = dict[GroupKey, list[dict[str, str]]]
COUNTS = ("samples", "directions", "shots")  # the local rule's sample counts, in table order
COUNT_NAMES = {"samples": "M (forward samples)", "directions": "K (SPSA directions)", "shots": "S (shots, 0: exact)"}
LOCAL_DEFAULTS = {f.name: f.default for f in fields(LocalConfig)}


def _group_key(source: str, row: dict[str, str]) -> GroupKey:
    return source, row["dataset"], row["label"], row["mode"], row["method"]


def _slug(key: tuple[str, ...]) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in "_".join(key))


def _training(row: dict[str, str]) -> str:
    text = "BPTT" if row["method"] == "bptt" else f"local ({row['estimator']})"
    return text + (", direct synapses" if row["direct"] == "True" else "")


def _sizes_text(row: dict[str, str]) -> str:
    return "-".join(str(int(v)) for v in split_numbers(row["sizes"]))


def _tested(rows: list[dict[str, str]]) -> list[float]:
    """Test accuracies (fractions) of the cells that were evaluated: a cell stopped by its time budget
    before its first epoch records NaN and is left out."""
    return [v for v in (float(r["test_accuracy"]) for r in rows) if math.isfinite(v)]


def _mean(values: list[float]) -> float:
    """Mean, NaN for no values."""
    return statistics.fmean(values) if values else math.nan


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _seeds(rows: list[dict[str, str]]) -> str:
    return ", ".join(sorted({r["seed"] for r in rows}, key=int))


def _layer_rates(rows: list[dict[str, str]]) -> list[float]:
    """Per-layer spike rates, mean over the rows."""
    rate_lists = [split_numbers(r["spike_rates"]) for r in rows if r["spike_rates"]]
    return [statistics.fmean(col) for col in zip(*rate_lists, strict=True)] if rate_lists else []


def mean_network_rate(row: dict[str, str]) -> float:
    """Spikes per neuron per step over every neuron of the network (layer rates weighted by width); NaN for a
    cell without rates (stopped before its first epoch)."""
    widths = split_numbers(row["sizes"])[1:]
    rates = split_numbers(row["spike_rates"])
    if not rates:
        return math.nan
    return sum(w * r for w, r in zip(widths, rates, strict=True)) / sum(widths)


def _summary(rows: list[dict[str, str]]) -> tuple[str, str, str]:
    """Validation and test accuracy (mean ± std, %) and mean per-layer spike rates of one group of cells."""
    val_accs = [float(r["val_accuracy"]) for r in rows if r.get("val_accuracy")]
    test = _mean_std(_tested(rows))
    return _mean_std(val_accs), test, " / ".join(f"{v:.3f}" for v in _layer_rates(rows))


class _Specs:
    """The ``[[models]]`` entry of each cell, read from its configuration file (cached per file)."""

    def __init__(self) -> None:
        self._configs: dict[str, dict[str, ModelSpec] | None] = {}

    def of(self, row: dict[str, str]) -> ModelSpec | None:
        path = row.get("config", "")
        if path not in self._configs:
            try:
                self._configs[path] = {m.label: m for m in load_config(path).models}
            except ConfigError:
                self._configs[path] = None
        models = self._configs[path]
        return None if models is None else models.get(row["label"])

    def train(self, row: dict[str, str]) -> dict[str, Any]:
        spec = self.of(row)
        return dict(spec.train) if spec is not None else {}

    def options(self, row: dict[str, str], leave_out: tuple[str, ...] = ()) -> str:
        """The cell's network and training options as one canonical text, without the ``leave_out`` keys."""
        spec = self.of(row)
        if spec is None:
            return ""
        train = {k: v for k, v in spec.train.items() if k not in leave_out}
        return json.dumps({"network": spec.network, "train": train}, sort_keys=True)


def _bar_figure(path: Path, title: str, bars: list[tuple[str, list[tuple[str, list[float]]]]]) -> None:
    """Grouped bars: one group per setting, one bar per memory mode (test accuracy, mean ± std)."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(bars) + 2), 4.5))
    modes = sorted({mode for _, per_mode in bars for mode, _ in per_mode})
    width = 0.8 / max(len(modes), 1)
    for m_index, mode in enumerate(modes):
        xs, ys, errs = [], [], []
        for g_index, (_, per_mode) in enumerate(bars):
            for name, accs in per_mode:
                if name == mode:
                    xs.append(g_index + (m_index - (len(modes) - 1) / 2) * width)
                    ys.append(100 * _mean(accs))
                    errs.append(100 * _std(accs))
        ax.bar(xs, ys, width=width, yerr=errs, capsize=3, label=mode)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([name for name, _ in bars], fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _memory_ablation(groups: Groups, specs: _Specs, figure: Path | None = None) -> tuple[list[str], bool]:
    """A table of the SQSNN memory modes side by side for every setting (results directory, dataset, sizes,
    training method, estimator, synapse layout, network and training options) that ran more than one mode, and a bar
    chart of it written to ``figure`` when given. Returns the lines (empty when no setting qualifies) and
    whether the figure was written."""
    Setting = tuple[str, str, str, str, str, str, str]
    by_setting: dict[Setting, dict[str, list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for (source, dataset, _, mode, method), rows in groups.items():
        first = rows[0]
        if first["kind"] == "sqsnn":
            train = specs.options(first)
            setting = (source, dataset, first["sizes"], method, first["estimator"], first["direct"], train)
            by_setting[setting][mode].extend(rows)
    settings = {k: v for k, v in sorted(by_setting.items()) if len(v) > 1}
    if not settings:
        return [], False
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
    bars: list[tuple[str, list[tuple[str, list[float]]]]] = []
    for (_, dataset, *_), modes in settings.items():
        per_mode = []
        for mode, rows in sorted(modes.items()):
            val, test, rates = _summary(rows)
            first = rows[0]
            lines.append(
                f"| {dataset} | {_sizes_text(first)} | {_training(first)} | {mode} | {val} | {test} | "
                f"{_seeds(rows)} | {rates} |"
            )
            per_mode.append((mode, _tested(rows)))
        first = next(iter(modes.values()))[0]
        bars.append((f"{dataset}\n{_sizes_text(first)}\n{_training(first)}", per_mode))
    if figure is not None:
        _bar_figure(figure, "SQSNN memory ablation: test accuracy per memory mode (mean ± std over seeds)", bars)
    return [*lines, ""], figure is not None


def _counts_of(train: dict[str, Any]) -> tuple[int, int, int]:
    return tuple(int(train.get(name, LOCAL_DEFAULTS[name])) for name in COUNTS)  # type: ignore[return-value]


def _sample_counts(groups: Groups, specs: _Specs, figure_dir: Path | None) -> tuple[list[str], list[Path]]:
    """Accuracy and cost of the local rule against its sample counts (M, K, S), for every setting (dataset,
    sizes, estimator, memory mode, synapse layout and every other network and training option; cells of
    several results directories combine; a cell stopped by its time budget only where its seed has no complete
    cell of that setting and counts) that ran more than one combination.

    Figures (one per setting, in ``figure_dir`` when given): one panel per count that varies, showing the
    cells whose other two counts sit at their most common values — test accuracy (mean ± std) and
    validation accuracy against the count, and on a second axis the circuit runs per training sample, neuron
    and step (probability evaluations times S shots, one per evaluation when exact; seconds per epoch for an
    estimator without circuits).
    """
    Setting = tuple[str, str, str, str, str, str]
    by_setting: dict[Setting, dict[tuple[int, int, int], list[dict[str, str]]]] = defaultdict(lambda: defaultdict(list))
    for (_, dataset, _, mode, method), rows in groups.items():
        first = rows[0]
        if method == "local":
            counts = _counts_of(specs.train(first))
            others = specs.options(first, leave_out=COUNTS)
            setting = (dataset, first["sizes"], first["estimator"], mode, first["direct"], others)
            by_setting[setting][counts].extend(rows)
    for by_counts in by_setting.values():
        for counts, rows in by_counts.items():
            by_counts[counts] = _complete_where_rerun(rows)
    settings = {k: v for k, v in sorted(by_setting.items()) if len(v) > 1}
    if not settings:
        return [], []
    lines = [
        "## Local-rule sample counts",
        "",
        "The local rule with one setting at a time of its sample counts: M independent forward runs per "
        "training sample, K SPSA directions per weight-gradient estimate (estimators `shift` and `official`), "
        "S shots per probability estimate (0: exact probabilities). Cost: probability evaluations (circuits "
        "on hardware) per training sample, neuron and step, times S shots on hardware; and the measured seconds "
        "per training epoch on the exact simulator (a shared 2-core machine: other jobs' load moves it). A cell "
        "stopped by its time budget is left out where its seed was re-run to the end of the same configuration.",
        "",
        "| Dataset | Layer sizes | Training | Memory | M | K | S | Val accuracy (%) | Test accuracy (%) | Seeds | "
        "Evaluations / sample·neuron·step | Shots / sample·neuron·step | s / epoch | s / cell |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    paths: list[Path] = []
    for index, (setting, by_counts) in enumerate(settings.items()):
        dataset, _, _, mode, _, _ = setting
        for (m, k, s), rows in sorted(by_counts.items()):
            val, test, _ = _summary(rows)
            first = rows[0]
            evaluations = probability_evaluations(first["estimator"], m, k)
            shots = "–" if evaluations is None or s == 0 else str(evaluations * s)
            lines.append(
                f"| {dataset} | {_sizes_text(first)} | {_training(first)} | {mode} | {m} | {k} | {s} | {val} | "
                f"{test} | {_seeds(rows)} | {'–' if evaluations is None else evaluations} | {shots} | "
                f"{_per_epoch_seconds(rows):.2f} | {statistics.fmean(float(r['seconds']) for r in rows):.1f} |"
            )
        if figure_dir is not None:
            path = figure_dir / f"sample_counts_{_slug(setting[:5])}{f'_{index}' if index else ''}.png"
            _counts_figure(path, f"{dataset} {_training(next(iter(by_counts.values()))[0])}, {mode}", by_counts)
            paths.append(path)
    return [*lines, ""], paths


def _complete_where_rerun(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The cells of one setting and sample counts, less each cell its time budget stopped whose seed also has a
    complete cell (the same configuration re-run to its end): a stopped cell's accuracy is that of fewer
    epochs than configured. The main table still lists them, marked."""
    complete = {r["seed"] for r in rows if r["status"] != "budget"}
    return [r for r in rows if r["status"] != "budget" or r["seed"] not in complete]


def probability_evaluations(estimator: str, samples: int, directions: int) -> int | None:
    """Spike-probability evaluations (circuits on hardware) per training sample, neuron and step of the
    ``shift`` and ``chain`` estimators (:mod:`sqsnn.training.estimators`): for each of the M forward runs the
    probability itself, 6 parameter-shifted ones (3 angles x +-pi/2) and, for ``shift``, 2 K SPSA-perturbed
    ones. None for the other estimators (``exact`` evaluates no circuits)."""
    per_run = {"shift": 7 + 2 * directions, "chain": 7}.get(estimator)
    return None if per_run is None else samples * per_run


def _circuit_runs(estimator: str, counts: tuple[int, int, int]) -> int | None:
    """Probability evaluations per training sample, neuron and step times the shots of each (1 when exact)."""
    evaluations = probability_evaluations(estimator, counts[0], counts[1])
    return None if evaluations is None else evaluations * max(counts[2], 1)


def _per_epoch_seconds(rows: list[dict[str, str]]) -> float:
    return statistics.fmean(float(r["seconds"]) / max(int(r["epochs"]), 1) for r in rows)


def _counts_figure(path: Path, title: str, by_counts: dict[tuple[int, int, int], list[dict[str, str]]]) -> None:
    base = tuple(statistics.mode(c[i] for c in by_counts) for i in range(len(COUNTS)))
    varying = [i for i in range(len(COUNTS)) if len({c[i] for c in by_counts}) > 1]
    fig, axes = plt.subplots(1, len(varying), figsize=(4.2 * len(varying), 3.8), squeeze=False)
    for panel, i in enumerate(varying):
        ax = axes[0][panel]
        line = sorted(
            ((c[i], c), rows) for c, rows in by_counts.items() if all(c[j] == base[j] for j in range(3) if j != i)
        )
        labels = [str(v) for (v, _), _ in line]
        xs = list(range(len(line)))
        tests = [[100 * v for v in _tested(rows)] for _, rows in line]
        vals = [[100 * float(r["val_accuracy"]) for r in rows if r.get("val_accuracy")] for _, rows in line]
        ax.errorbar(xs, [_mean(t) for t in tests], yerr=[_std(t) for t in tests], marker="o", capsize=3)
        if all(vals):
            ax.plot(xs, [statistics.fmean(v) for v in vals], marker="x", linestyle="--", label="validation")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels)
        ax.set_xlabel(COUNT_NAMES[COUNTS[i]])
        ax.set_ylabel("accuracy (%): test ●, validation ×")
        ax.grid(alpha=0.3)
        cost = ax.twinx()
        runs = [_circuit_runs(rows[0]["estimator"], c) for (_, c), rows in line]
        if all(r is not None for r in runs):
            cost.plot(xs, runs, marker="s", color="tab:gray", alpha=0.7)
            cost.set_ylabel("circuit runs / sample·neuron·step ■", color="tab:gray")
        else:
            cost.plot(xs, [_per_epoch_seconds(rows) for _, rows in line], marker="s", color="tab:gray", alpha=0.7)
            cost.set_ylabel("seconds per epoch ■", color="tab:gray")
        cost.set_ylim(bottom=0)
    others = ", ".join(f"{name} = {value}" for name, value in zip("MKS", base, strict=True))
    fig.suptitle(f"{title}: accuracy and cost vs sample counts (the others at {others})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _family(first: dict[str, str]) -> str:
    kind = {"sqsnn": "SQSNN", "lif": "LIF SNN", "qlif": "QLIF"}.get(first["kind"], first["kind"])
    return kind if first["mode"] == "-" else f"{kind} {first['mode']}"


def _rate_penalty(groups: Groups, specs: _Specs, figure_dir: Path | None) -> tuple[list[str], list[Path]]:
    """Accuracy against spike rate for every BPTT row whose configuration sets ``rate_penalty`` (lambda),
    per model family (kind and memory mode) of a results directory and dataset; one figure per dataset."""
    Family = tuple[str, str, str]  # source, dataset, family
    points: dict[Family, list[tuple[float, list[dict[str, str]]]]] = defaultdict(list)
    for (source, dataset, _, _, method), rows in groups.items():
        train = specs.train(rows[0])
        if method == "bptt" and "rate_penalty" in train:
            points[(source, dataset, _family(rows[0]))].append((float(train["rate_penalty"]), rows))
    if not points:
        return [], []
    lines = [
        "## Spike-rate penalty",
        "",
        "BPTT with `rate_penalty` = λ: the training loss adds λ times the spike probability per neuron per step "
        "over every neuron (LIF: its spikes). Mean rate: spikes per neuron per step over all neurons on the "
        "test set (layer rates weighted by width). Each λ is a final configuration, tested once per seed.",
        "",
        "| Dataset | Model | Layer sizes | λ | Val accuracy (%) | Test accuracy (%) | Mean spike rate | "
        "Spike rate per layer | Seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_dataset: dict[tuple[str, str], dict[str, list[tuple[float, list[dict[str, str]]]]]] = defaultdict(dict)
    for (source, dataset, family), sweep in sorted(points.items()):
        sweep.sort(key=lambda p: p[0])
        by_dataset[(source, dataset)][family] = sweep
        for lam, rows in sweep:
            val, test, rates = _summary(rows)
            mean_rate = statistics.fmean(mean_network_rate(r) for r in rows)
            lines.append(
                f"| {dataset} | {family} | {_sizes_text(rows[0])} | {lam:g} | {val} | {test} | {mean_rate:.4f} | "
                f"{rates} | {_seeds(rows)} |"
            )
    paths: list[Path] = []
    if figure_dir is not None:
        for (source, dataset), families in by_dataset.items():
            path = figure_dir / f"rate_penalty_{_slug((Path(source).name, dataset))}.png"
            _pareto_figure(path, dataset, families)
            paths.append(path)
    return [*lines, ""], paths


def _pareto_figure(path: Path, dataset: str, families: dict[str, list[tuple[float, list[dict[str, str]]]]]) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for family, sweep in sorted(families.items()):
        xs = [statistics.fmean(mean_network_rate(r) for r in rows) for _, rows in sweep]
        accs = [[100 * v for v in _tested(rows)] for _, rows in sweep]
        ys = [_mean(a) for a in accs]
        ax.errorbar(xs, ys, yerr=[_std(a) for a in accs], marker="o", capsize=3, label=family)
        for (lam, _), x, y in zip(sweep, xs, ys, strict=True):
            ax.annotate(f"λ={lam:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("mean spike rate (spikes per neuron per step, test set)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{dataset}: accuracy vs spike rate under a spike-rate penalty λ (mean ± std over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _matched_lif(groups: Groups, specs: _Specs) -> list[str]:
    """Each LIF row with ``match_parameters`` beside the BPTT SQSNN rows of its results directory and
    dataset trained with identical training options, with the SQSNN's lead in points (test, mean over seeds)."""
    lines = [
        "## SQSNN vs parameter-matched LIF SNN",
        "",
        "Each LIF SNN whose hidden width was matched to an SQSNN's parameter count, beside the BPTT SQSNN rows of "
        "the same run and dataset trained with the same options. Δ: SQSNN minus LIF test accuracy (points).",
        "",
        "| Dataset | SQSNN | Memory | Params | LIF SNN | Params | SQSNN test (%) | LIF test (%) | Δ (points) | Seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for (source, dataset, label, _, _), lif_rows in sorted(groups.items()):
        spec = specs.of(lif_rows[0])
        if lif_rows[0]["kind"] != "lif" or spec is None or spec.match_parameters is None:
            continue
        for (s_source, s_dataset, s_label, s_mode, s_method), rows in sorted(groups.items()):
            if (s_source, s_dataset, s_method) != (source, dataset, "bptt") or rows[0]["kind"] != "sqsnn":
                continue
            if specs.train(rows[0]) != spec.train:
                continue
            found = True
            lif_acc = _mean(_tested(lif_rows))
            sqs_acc = _mean(_tested(rows))
            lines.append(
                f"| {dataset} | {s_label} | {s_mode} | {rows[0]['num_parameters']} | {label} | "
                f"{lif_rows[0]['num_parameters']} | {_mean_std(_tested(rows))} | "
                f"{_mean_std(_tested(lif_rows))} | {100 * (sqs_acc - lif_acc):+.2f} | "
                f"{_seeds(rows)} / {_seeds(lif_rows)} |"
            )
    return [*lines, ""] if found else []


def _parameter_counts(groups: Groups) -> list[str]:
    """Every architecture's trainable-parameter count per dataset (rows of equal kind, sizes and synapse
    layout merged, their labels listed), relative to the dataset's largest SQSNN without direct synapses
    (the one parameter-matched baselines are matched to)."""
    models: dict[str, dict[tuple[str, str, str], tuple[int, set[str]]]] = defaultdict(dict)
    plain_sqsnn: dict[str, list[int]] = defaultdict(list)
    for (_, dataset, label, _, _), rows in groups.items():
        first = rows[0]
        arch = (first["kind"], first["sizes"], first["direct"])
        count, labels = models[dataset].get(arch, (int(first["num_parameters"]), set()))
        models[dataset][arch] = (count, labels | {label})
        if first["kind"] == "sqsnn" and first["direct"] != "True":
            plain_sqsnn[dataset].append(int(first["num_parameters"]))
    lines = [
        "## Parameter counts",
        "",
        "Trainable scalars of every model (SQSNN: weights, biases if any, three angles per neuron; LIF: weights "
        "and biases; QLIF: two weight matrices). A LIF network with `match_parameters` has the hidden width "
        "whose count is closest to the named SQSNN's.",
        "",
        "| Dataset | Kind | Layer sizes | Direct synapses | Params | Params / SQSNN | Rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, archs in sorted(models.items()):
        reference = max(plain_sqsnn[dataset], default=None)
        for (kind, sizes, direct), (n, labels) in sorted(archs.items()):
            ratio = f"{n / reference:.4f}" if reference else "–"
            size_text = "-".join(str(int(v)) for v in split_numbers(sizes))
            direct_text = "yes" if direct == "True" else "no"
            lines.append(
                f"| {dataset} | {kind} | {size_text} | {direct_text} | {n} | {ratio} | {', '.join(sorted(labels))} |"
            )
    return [*lines, ""]


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


def _row_figures(
    results_dir: Path, fig_dir: Path, groups: Groups, redraw: Collection[str] | None
) -> list[tuple[str, Path]]:
    """Draw the rows' rasters and rate histograms (those of rows holding a cell in ``redraw``, and any missing;
    every row when ``redraw`` is None) and every dataset's accuracy curves into ``fig_dir``; returns the
    accuracy figures as ``(dataset, path)``."""
    cells = {r["key"] for rows in groups.values() for r in rows}
    epochs = defaultdict(list)
    for r in read_rows(results_dir / EPOCHS):
        if r["key"] in cells:
            epochs[r["key"]].append(r)
    neuron_rates: dict[str, dict[tuple[int, int], float]] = defaultdict(dict)
    for r in read_rows(results_dir / NEURONS):
        neuron_rates[r["key"]][(int(r["layer"]), int(r["neuron"]))] = float(r["rate"])
    events: dict[str, set[tuple[int, int, int]]] = defaultdict(set)
    for r in read_rows(results_dir / RASTER):
        events[r["key"]].add((int(r["layer"]), int(r["step"]), int(r["neuron"])))
    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for key, rows in sorted(groups.items()):
        first = min(rows, key=lambda r: int(r["seed"]))
        name = f"{first['label']} [{first['mode']}, {_training(first)}]"
        sizes = [int(s) for s in split_numbers(first["sizes"])]
        raster_path, rates_path = fig_dir / f"raster_{_slug(key[1:])}.png", fig_dir / f"rates_{_slug(key[1:])}.png"
        changed = redraw is None or any(r["key"] in redraw for r in rows)
        if changed or not raster_path.is_file():
            T = max((t for _, t, _ in events[first["key"]]), default=0) + 1
            _raster_figure(raster_path, name, sizes, events[first["key"]], T)
        if changed or not rates_path.is_file():
            per_layer: dict[int, list[float]] = defaultdict(list)
            for (layer, _), rate in sorted(neuron_rates[first["key"]].items()):
                per_layer[layer].append(rate)
            _rates_figure(rates_path, name, dict(per_layer))
        for r in rows:
            for er in epochs[r["key"]]:
                held_out = er.get("val_accuracy") or er["test_accuracy"]
                curves[key[1]][name][int(er["epoch"])].append(float(held_out))
    paths = []
    for dataset, by_name in sorted(curves.items()):
        path = fig_dir / f"accuracy_{_slug((dataset,))}.png"
        _accuracy_figure(path, dataset, by_name)
        paths.append((dataset, path))
    return paths


def report(
    results_dirs: Path | str | Sequence[Path | str],
    output: Path | str | None = None,
    *,
    figures_dir: Path | str | None = None,
    redraw: Collection[str] | None = None,
) -> Path:
    """Write the markdown report of one or more results directories and its figures; returns its path.

    Args:
        results_dirs: one results directory, or several to combine into one report.
        output: the markdown file (default ``<results_dir>/results.md``; required with several directories).
        figures_dir: where the section figures go (default ``<results_dir>/figures`` for one directory,
            ``<output without .md>-figures`` for several). With one directory the rows' own figures are
            drawn into ``<results_dir>/figures`` too; with several they are linked where they exist.
        redraw: with one directory, the keys of the cells whose rows' raster and rate figures are redrawn
            (the runner passes the cell it just finished); None redraws every row's. Missing ones are drawn.

    Raises:
        FileNotFoundError: a directory without ``cells.csv``.
        ValueError: several directories and no ``output``.
    """
    dirs = [Path(results_dirs)] if isinstance(results_dirs, str | Path) else [Path(d) for d in results_dirs]
    if not dirs:
        raise ValueError("report needs at least one results directory")
    for d in dirs:
        if not (d / CELLS).is_file():
            raise FileNotFoundError(f"no {CELLS} in {d}: run `sqsnn experiment run CONFIG` first")
    combined = len(dirs) > 1
    if combined and output is None:
        raise ValueError("a report of several results directories needs an output file")
    md_path = Path(output) if output is not None else dirs[0] / "results.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    if figures_dir is not None:
        fig_dir = Path(figures_dir)
    else:
        fig_dir = md_path.with_name(md_path.stem + "-figures") if combined else dirs[0] / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)

    def link(path: Path) -> str:
        return Path(os.path.relpath(path, md_path.parent)).as_posix()

    groups: Groups = defaultdict(list)
    for d in dirs:
        for row in {row["key"]: row for row in read_rows(d / CELLS)}.values():
            groups[_group_key(d.as_posix(), row)].append(row)
    for rows in groups.values():
        rows.sort(key=lambda r: int(r["seed"]))
    accuracy_figures: list[tuple[str, Path]] = []
    if combined:
        for d in dirs:
            accuracy_figures += [
                (f"{p.stem.removeprefix('accuracy_')} ({d.as_posix()})", p)
                for p in sorted(d.glob("figures/accuracy_*.png"))
            ]
    else:
        accuracy_figures = _row_figures(dirs[0], dirs[0] / "figures", groups, redraw)

    sources = ", ".join(f"`{d.as_posix()}`" for d in dirs)
    lines = [
        "# Results",
        "",
        f"Generated by `sqsnn experiment report` from the CSV files in {sources}. Accuracy: mean ± standard "
        "deviation over seeds, single-shot. Each cell keeps the epoch with the best accuracy on its validation "
        "split (a seeded stratified part of the training split; Best epoch) and evaluates the test split once "
        "with those weights; cells without a validation split (Val –) keep their last epoch. Spike rate: "
        "spikes per neuron per step on the test set, per layer. † the cell's time budget stopped training early.",
        "",
        "| Dataset | Model | Memory | Training | Layer sizes | Params | Val accuracy (%) | Test accuracy (%) | "
        "Seeds | Spike rate per layer | Epochs | Best epoch | s / cell | Figures | Command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(groups):
        rows = groups[key]
        first = rows[0]
        val, test, rates = _summary(rows)
        budget = " †" if any(r["status"] == "budget" for r in rows) else ""
        figure_dir = Path(key[0]) / "figures"
        figure_links = [
            f"[{kind}]({link(figure_dir / f'{kind}_{_slug(key[1:])}.png')})"
            for kind in ("raster", "rates")
            if (figure_dir / f"{kind}_{_slug(key[1:])}.png").is_file()
        ]
        lines.append(
            f"| {key[1]} | {first['label']} | {first['mode']} | {_training(first)} | {_sizes_text(first)} | "
            f"{first['num_parameters']} | {val} | {test}{budget} | {', '.join(r['seed'] for r in rows)} | "
            f"{rates} | {first['epochs']} | {', '.join(r.get('best_epoch') or '–' for r in rows)} | "
            f"{statistics.fmean(float(r['seconds']) for r in rows):.1f} | {', '.join(figure_links) or '–'} | "
            f"`{first['command']}` |"
        )
    lines.append("")
    specs = _Specs()
    memory_figure = fig_dir / "memory_ablation.png"
    memory_lines, drawn = _memory_ablation(groups, specs, memory_figure)
    lines += memory_lines
    if drawn:
        lines += [f"![memory ablation: test accuracy per memory mode]({link(memory_figure)})", ""]
    for section in (_sample_counts, _rate_penalty):
        section_lines, paths = section(groups, specs, fig_dir)
        lines += section_lines
        lines += [line for path in paths for line in (f"![{path.stem}]({link(path)})", "")]
    lines += _matched_lif(groups, specs)
    lines += _parameter_counts(groups)
    for dataset, path in accuracy_figures:
        lines.append(f"![{dataset}: held-out accuracy per epoch]({link(path)})")
        lines.append("")
    for d in dirs:
        notes = d / "notes.md"
        if notes.is_file():
            lines.append(notes.read_text().rstrip())
            lines.append("")
    md_path.write_text("\n".join(lines))
    return md_path
