"""Experiment runner: grid expansion, budgets, resume, CSV records, table, figures and the CLI."""

from __future__ import annotations

import csv
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sqsnn.baselines.lif import lif_parameter_count
from sqsnn.experiments import load_config, report, run_experiment
from sqsnn.experiments.cli import experiment_app
from sqsnn.experiments.config import ConfigError

GRID = """
name = "tiny"
results_dir = "{results}"
datasets = ["digits"]
seeds = [0, 1]

[budget]
max_epochs = 1

[dataset_options.digits]
classes = [0, 1]
limit_train = 40
limit_test = 20

[[models]]
label = "SQSNN"
kind = "sqsnn"
hidden = [4]
modes = ["quantum", "memoryless"]
method = "bptt"
train = {{ epochs = 3, batch_size = 20, T = 3 }}

[[models]]
label = "SQSNN local"
kind = "sqsnn"
hidden = [4]
modes = ["official"]
method = "local"
network = {{ direct = true }}
train = {{ estimator = "chain", epochs = 1, batch_size = 20, T = 3 }}

[[models]]
label = "LIF"
kind = "lif"
hidden = [4]
match_parameters = "SQSNN"
train = {{ epochs = 1, batch_size = 20, T = 3 }}

[[models]]
label = "QLIF"
kind = "qlif"
hidden = [4]
train = {{ epochs = 1, batch_size = 20, T = 3 }}
"""


def _flat(output: str) -> str:
    """CLI output with rich's box drawing and line wrapping removed."""
    return " ".join(output.replace("│", " ").split())


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text.format(results=(tmp_path / "results").as_posix()))
    return path


def test_grid_runs_every_cell_and_writes_records_table_and_figures(tmp_path: Path) -> None:
    config = _write_config(tmp_path, GRID)
    summary = run_experiment(config, log=lambda _: None)
    assert len(summary.ran) == 2 * 2 + 2 + 2 + 2 and not summary.skipped
    results = tmp_path / "results"
    cells = _rows(results / "cells.csv")
    assert {c["key"] for c in cells} == set(summary.ran)
    by_label = {(c["label"], c["mode"], c["seed"]): c for c in cells}
    sqsnn = by_label[("SQSNN", "quantum", "0")]
    assert sqsnn["epochs"] == "1", "max_epochs caps the configured 3 epochs"
    assert int(sqsnn["num_parameters"]) == 64 * 4 + 4 * 2 + 3 * 6
    lif = by_label[("LIF", "-", "0")]
    sizes = [int(float(s)) for s in lif["sizes"].split(";")]
    assert int(lif["num_parameters"]) == lif_parameter_count(sizes, bias=True)
    assert abs(int(lif["num_parameters"]) - int(sqsnn["num_parameters"])) <= (64 + 2 + 1) / 2
    assert by_label[("SQSNN local", "official", "1")]["estimator"] == "chain"
    for c in cells:
        assert 0.0 <= float(c["test_accuracy"]) <= 1.0
        assert c["command"] == f"sqsnn experiment run {config}"
    epochs = _rows(results / "epochs.csv")
    assert len(epochs) == len(cells)
    neurons = _rows(results / "neurons.csv")
    assert {(n["key"], n["layer"]) for n in neurons} >= {(sqsnn["key"], "0"), (sqsnn["key"], "1")}
    assert all(0.0 <= float(n["rate"]) <= 1.0 for n in neurons)
    table = (results / "results.md").read_text()
    main_table = table.split("## ")[0]
    assert main_table.count("| digits |") == 5  # one row per (model, mode, method), seeds aggregated
    ablation = table.split("## Memory ablation")[1].split("## ")[0]
    assert ablation.count("| digits | 64-4-2 | BPTT |") == 2  # quantum and memoryless, same sizes and method
    counts = table.split("## Parameter counts")[1]
    assert f"| digits | sqsnn | 64-4-2 | no | {64 * 4 + 4 * 2 + 3 * 6} | 1.0000 | SQSNN |" in counts
    assert "local (chain), direct synapses" in table
    figures = sorted(p.name for p in (results / "figures").iterdir())
    assert "accuracy_digits.png" in figures
    assert sum(name.startswith("raster_") for name in figures) == 5
    assert sum(name.startswith("rates_") for name in figures) == 5
    assert all((results / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in figures)

    # report() rebuilds the same table from the CSV files alone, plus hand-written notes
    (results / "results.md").unlink()
    (results / "notes.md").write_text("## Notes\n\nhand-written caveat\n")
    out = report(results, tmp_path / "docs" / "results.md")
    rebuilt = out.read_text()
    assert rebuilt.replace("../results/figures/", "figures/") == table + "\n## Notes\n\nhand-written caveat\n"
    assert "](../results/figures/raster_" in out.read_text()


def test_interrupted_run_resumes_from_checkpoint_and_skips_finished_cells(tmp_path: Path) -> None:
    text = """
results_dir = "{results}"
report = "{results}/../table.md"
datasets = ["digits"]
seeds = [0, 1]
[dataset_options.digits]
classes = [0, 1]
limit_train = 40
limit_test = 20
[[models]]
label = "S"
kind = "sqsnn"
hidden = [4]
train = {{ epochs = 2, batch_size = 20, T = 3 }}
"""
    config = _write_config(tmp_path, text)
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    reference = run_experiment(_write_config(reference_dir, text), log=lambda _: None)
    assert len(reference.ran) == 2

    class Interrupt(Exception):
        pass

    def interrupt_in_second_cell(message: str) -> None:
        if "seed1 epoch 1" in message:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_experiment(config, log=interrupt_in_second_cell)
    assert len(_rows(tmp_path / "results" / "cells.csv")) == 1
    messages: list[str] = []
    summary = run_experiment(config, log=messages.append)
    assert summary.skipped == ["S/quantum/bptt/digits/seed0"]
    assert summary.ran == ["S/quantum/bptt/digits/seed1"]
    assert any("resuming S/quantum/bptt/digits/seed1 after epoch 1" in m for m in messages)
    got = {r["key"]: r["test_accuracy"] for r in _rows(tmp_path / "results" / "cells.csv")}
    want = {r["key"]: r["test_accuracy"] for r in _rows(reference_dir / "results" / "cells.csv")}
    assert got == want, "a resumed cell ends exactly where an uninterrupted one does"
    assert run_experiment(config, log=lambda _: None).ran == []
    assert not list((tmp_path / "results" / "checkpoints").iterdir()), "finished cells leave no checkpoint"
    assert "| digits | S | quantum | BPTT |" in (tmp_path / "table.md").read_text(), "the configured report path"


def test_total_budget_leaves_cells_for_the_next_run(tmp_path: Path) -> None:
    text = GRID.replace("max_epochs = 1", "max_epochs = 1\nmax_total_seconds = 0")
    summary = run_experiment(_write_config(tmp_path, text), log=lambda _: None)
    assert summary.ran == [] and len(summary.remaining) == 10


def test_one_process_per_seed_fills_one_results_directory(tmp_path: Path) -> None:
    text = GRID.split("[[models]]")[0] + "[[models]]" + GRID.split("[[models]]")[1]  # the BPTT SQSNN rows only
    config = _write_config(tmp_path, text)
    first = run_experiment(config, seeds=[1], log=lambda _: None)
    assert sorted(first.ran) == ["SQSNN/memoryless/bptt/digits/seed1", "SQSNN/quantum/bptt/digits/seed1"]
    second = run_experiment(config, seeds=[0], log=lambda _: None)
    assert all(key.endswith("seed0") for key in second.ran) and len(second.ran) == 2
    assert sorted(r["seed"] for r in _rows(tmp_path / "results" / "cells.csv")) == ["0", "0", "1", "1"]
    assert run_experiment(config, log=lambda _: None).ran == []  # nothing left for a plain run
    with pytest.raises(ConfigError, match=r"seed\(s\) \[7\]"):
        run_experiment(config, seeds=[7], log=lambda _: None)


def test_one_process_per_model_runs_only_that_models_cells(tmp_path: Path) -> None:
    config = _write_config(tmp_path, GRID)
    labels = sorted({m.label for m in load_config(config).models})
    assert len(labels) >= 2, "the grid must hold two models for this test to mean anything"
    first = run_experiment(config, models=[labels[0]], seeds=[0], log=lambda _: None)
    assert first.ran and all(key.startswith(f"{labels[0]}/") and key.endswith("seed0") for key in first.ran)
    with pytest.raises(ConfigError, match=r"model\(s\) \['nope'\]"):
        run_experiment(config, models=["nope"], log=lambda _: None)


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_full_mnist_family_rows_from_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("mnist", "fmnist", "kmnist"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        files = {
            "train-images-idx3-ubyte": rng.integers(0, 256, size=(30, 28, 28)),
            "train-labels-idx1-ubyte": np.arange(30) % 10,
            "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(20, 28, 28)),
            "t10k-labels-idx1-ubyte": np.arange(20) % 10,
        }
        for file_name, array in files.items():
            (folder / f"{file_name}.gz").write_bytes(gzip.compress(_idx(array)))
    text = f"""
results_dir = "{(tmp_path / "results").as_posix()}"
data_dir = "{(tmp_path / "data").as_posix()}"
datasets = ["mnist", "fmnist", "kmnist"]
seeds = [0]
[[models]]
label = "SQSNN"
kind = "sqsnn"
hidden = [8]
train = {{ epochs = 1, batch_size = 15, T = 2 }}
[[models]]
label = "QLIF"
kind = "qlif"
hidden = [8]
train = {{ epochs = 1, batch_size = 15, T = 2 }}
"""
    config = tmp_path / "mnist.toml"
    config.write_text(text)
    run_experiment(config, log=lambda _: None)
    cells = _rows(tmp_path / "results" / "cells.csv")
    assert sorted((c["dataset"], c["label"]) for c in cells) == sorted(
        (d, m) for d in ("mnist", "fmnist", "kmnist") for m in ("SQSNN", "QLIF")
    )
    assert all(c["sizes"] == "784;8;10" for c in cells)
    table = (tmp_path / "results" / "results.md").read_text()
    for name in ("mnist", "fmnist", "kmnist"):
        assert f"| {name} | SQSNN | quantum | BPTT | 784-8-10 |" in table


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ('\n[[models]]\nlabel = "X"\nkind = "lif"\nhidden = [4]\nmodes = ["quantum"]\n', "modes applies"),
        (
            '\n[[models]]\nlabel = "X"\nkind = "qlif"\nhidden = [4]\nmethod = "local"\n',
            "local rule trains SQSNNs",
        ),
        ('\n[[models]]\nlabel = "X"\nkind = "sqsnn"\nhidden = [4]\ntrain = {{ lr_typo = 1 }}\n', "lr_typo"),
        (
            '\n[[models]]\nlabel = "X"\nkind = "lif"\nhidden = [4]\nmatch_parameters = "nope"\n',
            "names no model",
        ),
        ('\n[[models]]\nlabel = "X"\nkind = "sqsnn"\nhidden = [4]\nmodes = ["classical"]\n', "memory modes"),
        ('\n[[models]]\nlabel = "SQSNN"\nkind = "lif"\nhidden = [4]\n', "unique"),
    ],
)
def test_bad_configurations_are_refused_naming_the_key(tmp_path: Path, snippet: str, message: str) -> None:
    path = _write_config(tmp_path, GRID + snippet)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_cli_run_and_report(tmp_path: Path) -> None:
    text = GRID.replace("seeds = [0, 1]", "seeds = [0]").replace('modes = ["quantum", "memoryless"]', "")
    config = _write_config(tmp_path, text)
    runner = CliRunner()
    result = runner.invoke(experiment_app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert "ran 4, skipped 0, left 0" in result.output
    out = tmp_path / "table.md"
    result = runner.invoke(experiment_app, ["report", str(tmp_path / "results"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "| digits | QLIF |" in out.read_text()
    missing = runner.invoke(experiment_app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "sqsnn experiment run" in _flat(missing.output)
    bad = tmp_path / "bad.toml"
    bad.write_text('results_dir = "x"\ndatasets = ["digits"]\nmodels = []\ncolour = 1\n')
    refused = runner.invoke(experiment_app, ["run", str(bad)])
    assert refused.exit_code != 0 and "unknown key(s) colour" in _flat(refused.output)


def test_cells_are_chosen_on_validation_and_tested_once(tmp_path: Path) -> None:
    text = GRID.replace("max_epochs = 1", "max_epochs = 3")
    config = _write_config(tmp_path, text)
    run_experiment(config, log=lambda _: None)
    results = tmp_path / "results"
    cells = {c["key"]: c for c in _rows(results / "cells.csv")}
    epochs = _rows(results / "epochs.csv")
    for key, cell in cells.items():
        own = [e for e in epochs if e["key"] == key]
        assert all(e["val_accuracy"] and not e["test_accuracy"] for e in own)  # the test split is not looked at
        vals = [float(e["val_accuracy"]) for e in own]
        assert int(cell["best_epoch"]) == vals.index(max(vals)) + 1
        assert float(cell["val_accuracy"]) == max(vals)
        assert 0.0 <= float(cell["test_accuracy"]) <= 1.0
    table = (results / "results.md").read_text()
    assert "| Val accuracy (%) | Test accuracy (%) |" in table and "Best epoch" in table


def test_float32_cells_of_every_model_kind_finish_with_their_spike_profile(tmp_path: Path) -> None:
    # the spike profile after training once fed float64 spikes to a float32 LIF network (a crash after its
    # last epoch, losing the cell)
    text = GRID.replace("seeds = [0, 1]", "seeds = [0]")
    for bptt in ("{{ epochs = 3, batch_size = 20, T = 3", "{{ epochs = 1, batch_size = 20, T = 3"):
        text = text.replace(bptt, bptt + ', dtype = "float32"')
    assert text.count('dtype = "float32"') == 3  # the BPTT SQSNN, LIF and QLIF cells (the local rule has none)
    run_experiment(_write_config(tmp_path, text), log=lambda _: None)
    cells = _rows(tmp_path / "results" / "cells.csv")
    assert {c["kind"] for c in cells} == {"sqsnn", "lif", "qlif"} and all(c["status"] == "done" for c in cells)
    assert all(c["spike_rates"] for c in cells)


def test_appending_to_a_file_with_an_older_header_keeps_every_value_under_its_column(tmp_path: Path) -> None:
    from sqsnn.experiments.records import append_rows, read_rows

    path = tmp_path / "cells.csv"
    path.write_text("key,test_accuracy\nold,0.5\n")
    append_rows(
        path, ["key", "val_accuracy", "test_accuracy"], [{"key": "new", "val_accuracy": "0.7", "test_accuracy": "0.6"}]
    )
    assert read_rows(path) == [
        {"key": "old", "val_accuracy": "", "test_accuracy": "0.5"},
        {"key": "new", "val_accuracy": "0.7", "test_accuracy": "0.6"},
    ]


def test_memory_ablation_keeps_estimators_and_synapse_layouts_apart() -> None:
    from sqsnn.experiments.report import _memory_ablation, _Specs

    def cell(label: str, mode: str, estimator: str, accuracy: float) -> dict[str, str]:
        return {
            "kind": "sqsnn", "sizes": "256;2;2", "method": "local", "estimator": estimator, "direct": "True",
            "seed": "0", "val_accuracy": "", "test_accuracy": str(accuracy), "spike_rates": "0.1;0.2",
        }  # fmt: skip

    groups = {
        ("results", "usps", label, mode, "local"): [cell(label, mode, estimator, acc)]
        for label, estimator, acc in (("exact", "exact", 0.98), ("recipe", "official", 0.80))
        for mode in ("quantum", "official")
    }
    lines, drawn = _memory_ablation(groups, _Specs())
    rows = [line for line in lines if line.startswith("| usps")]
    assert not drawn
    assert len(rows) == 4
    assert sum("local (exact)" in r and "98.00" in r for r in rows) == 2  # never averaged with the recipe's 80 %
    assert sum("local (official)" in r and "80.00" in r for r in rows) == 2


SECTIONS = """
results_dir = "unused"
datasets = ["digits"]
[[models]]
label = "K5"
kind = "sqsnn"
hidden = [2]
method = "local"
network = {{ direct = true }}
train = {{ estimator = "shift", directions = 5 }}
[[models]]
label = "K1"
kind = "sqsnn"
hidden = [2]
method = "local"
network = {{ direct = true }}
train = {{ estimator = "shift", directions = 1 }}
[[models]]
label = "K5 S10"
kind = "sqsnn"
hidden = [2]
method = "local"
network = {{ direct = true }}
train = {{ estimator = "shift", directions = 5, shots = 10 }}
[[models]]
label = "S0"
kind = "sqsnn"
hidden = [4]
modes = ["quantum", "memoryless"]
train = {{ rate_penalty = 0.0 }}
[[models]]
label = "S1"
kind = "sqsnn"
hidden = [4]
train = {{ rate_penalty = 1.0 }}
[[models]]
label = "L0"
kind = "lif"
hidden = [4]
match_parameters = "S0"
train = {{ rate_penalty = 0.0 }}
"""


def _cell_row(
    config: Path, label: str, kind: str, mode: str, method: str, seed: int, **values: object
) -> dict[str, object]:
    from sqsnn.experiments.records import CELL_COLUMNS

    row: dict[str, object] = {c: "" for c in CELL_COLUMNS}
    row.update(
        key=f"{label}/{mode}/{method}/digits/seed{seed}", config=str(config), label=label, kind=kind, mode=mode,
        method=method, estimator="shift" if method == "local" else "-", dataset="digits", seed=seed,
        sizes="64;4;10", direct=str(method == "local"), num_parameters=100, epochs=2, best_epoch=1,
        val_accuracy="0.5", status="done", command=f"sqsnn experiment run {config}", seconds="10",
    )  # fmt: skip
    row.update(values)
    return row


def test_combined_report_renders_sample_counts_rate_penalty_and_matched_lif_sections(tmp_path: Path) -> None:
    from sqsnn.experiments.records import CELL_COLUMNS, CELLS, append_rows

    config = tmp_path / "checks.toml"
    config.write_text(SECTIONS.format())
    local, other_local, bptt = tmp_path / "local", tmp_path / "local-k1", tmp_path / "bptt"
    for folder, runs in ((local, (("K5", (0.9, 0.8)), ("K5 S10", (0.7, 0.7)))), (other_local, (("K1", (0.6, 0.6)),))):
        rows = [
            _cell_row(config, label, "sqsnn", "quantum", "local", seed, test_accuracy=acc, spike_rates="0.1;0.2")
            for label, accs in runs
            for seed, acc in enumerate(accs)
        ]
        append_rows(folder / CELLS, CELL_COLUMNS, rows)
    stopped = _cell_row(config, "K1", "sqsnn", "quantum", "local", 2, test_accuracy="nan", status="budget", epochs=0)
    append_rows(other_local / CELLS, CELL_COLUMNS, [stopped])  # stopped before its first epoch: not evaluated
    # K5 S10's seed 1 stopped by its budget in another folder, then re-run to its end above: left out of the counts
    rerun = tmp_path / "local-stopped"
    cut = _cell_row(config, "K5 S10", "sqsnn", "quantum", "local", 1, test_accuracy=0.1, status="budget")
    append_rows(rerun / CELLS, CELL_COLUMNS, [cut])
    rows = [
        _cell_row(config, "S0", "sqsnn", "quantum", "bptt", s, test_accuracy=0.9, spike_rates="0.3;0.1") for s in (0, 1)
    ]
    rows += [_cell_row(config, "S0", "sqsnn", "memoryless", "bptt", 0, test_accuracy=0.5, spike_rates="0.3;0.1")]
    rows += [_cell_row(config, "S1", "sqsnn", "quantum", "bptt", 0, test_accuracy=0.8, spike_rates="0.1;0.1")]
    rows += [_cell_row(config, "L0", "lif", "-", "bptt", 0, test_accuracy=0.85, spike_rates="0.2;0.2")]
    append_rows(bptt / CELLS, CELL_COLUMNS, rows)

    with pytest.raises(ValueError, match="output"):
        report([local, bptt])
    out = report([local, other_local, rerun, bptt], tmp_path / "docs" / "all.md")
    text = out.read_text()
    counts = text.split("## Local-rule sample counts")[1].split("## ")[0]
    assert (
        "| digits | 64-4-10 | local (shift), direct synapses | quantum | 1 | 5 | 0 | 50.00 ± 0.00 | 85.00 ± 7.07 |"
        in (counts)
    )
    assert "| quantum | 1 | 1 | 0 |" in counts and "| quantum | 1 | 5 | 10 |" in counts  # one table, two folders
    assert "| 1 | 1 | 0 | 50.00 ± 0.00 | 60.00 ± 0.00 | 0, 1, 2 |" in counts  # the unevaluated cell is left out
    assert "| 60.00 ± 0.00 † | 0, 1, 2 |" in text.split("## ")[0]  # main table: † marks the budget stop
    assert "| 0, 1 | 17 | – | 5.00 | 10.0 |" in counts  # 1 + 6 shifted + 2 K = 17 evaluations; 10 s over 2 epochs
    assert "| 0, 1, 2 | 9 | – |" in counts and "| 0, 1 | 17 | 170 |" in counts
    assert "| 70.00 ± 0.00 | 0, 1 | 17 | 170 |" in counts  # the re-run seed's stopped cell (10 %) left out
    assert "| 10.00 ± 0.00 † | 1 |" in text.split("## ")[0]  # ... but listed, marked, in the main table
    penalty = text.split("## Spike-rate penalty")[1].split("## ")[0]
    mean_rate = (4 * 0.3 + 10 * 0.1) / 14
    assert f"| digits | SQSNN quantum | 64-4-10 | 0 | 50.00 ± 0.00 | 90.00 ± 0.00 | {mean_rate:.4f} |" in penalty
    assert "| digits | SQSNN quantum | 64-4-10 | 1 |" in penalty and "| digits | LIF SNN | 64-4-10 | 0 |" in penalty
    assert "SQSNN memoryless" in penalty  # a family per memory mode
    matched = text.split("## SQSNN vs parameter-matched LIF SNN")[1].split("## ")[0]
    assert "| digits | S0 | quantum | 100 | L0 | 100 | 90.00 ± 0.00 | 85.00 ± 0.00 | +5.00 |" in matched
    assert "| S1 |" not in matched, "different training options are not compared"
    ablation = text.split("## Memory ablation")[1].split("## ")[0]
    assert ablation.count("| digits | 64-4-10 | BPTT |") == 2
    params = text.split("## Parameter counts")[1]
    assert "| digits | sqsnn | 64-4-10 | yes | 100 |" in params and "K1, K5, K5 S10" in params
    figures = tmp_path / "docs" / "all-figures"
    names = sorted(p.name for p in figures.iterdir())
    assert names == [
        "memory_ablation.png",
        "rate_penalty_bptt_digits.png",
        "sample_counts_digits_64_4_10_shift_quantum_True.png",
    ]
    assert all((figures / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    for name in names:
        assert f"](all-figures/{name})" in text


def test_report_redraws_only_the_rows_of_the_cells_named(tmp_path: Path) -> None:
    from sqsnn.experiments.records import CELL_COLUMNS, CELLS, NEURON_COLUMNS, NEURONS, append_rows

    config = tmp_path / "checks.toml"
    config.write_text(SECTIONS.format())
    results = tmp_path / "results"
    rows = [_cell_row(config, label, "sqsnn", "quantum", "bptt", 0, test_accuracy=0.5) for label in ("S0", "S1")]
    rows[1]["spike_rates"] = "0.2;0.1"  # S0 without rates: a cell stopped before its first epoch
    append_rows(results / CELLS, CELL_COLUMNS, rows)
    neurons = [{"key": r["key"], "layer": layer, "neuron": 0, "rate": 0.1} for r in rows for layer in (0, 1)]
    append_rows(results / NEURONS, NEURON_COLUMNS, neurons)
    report(results)
    figures = results / "figures"
    raster = {label: figures / f"raster_digits_{label}_quantum_bptt.png" for label in ("S0", "S1")}
    before = {label: path.stat().st_mtime_ns for label, path in raster.items()}
    (figures / "rates_digits_S1_quantum_bptt.png").unlink()
    report(results, redraw={str(rows[0]["key"])})
    assert raster["S0"].stat().st_mtime_ns > before["S0"], "the named cell's row is redrawn"
    assert raster["S1"].stat().st_mtime_ns == before["S1"], "the other row is left alone"
    assert (figures / "rates_digits_S1_quantum_bptt.png").is_file(), "a missing figure is drawn"
