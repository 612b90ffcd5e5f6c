"""The ``sqsnn`` command line.

Science commands live here (``train``, ``evaluate``, ``datasets``, ``experiment``). Packages that sit
above :mod:`sqsnn` (the backends, the service) add their own commands through the ``sqsnn.cli`` entry-point
group, so this module never imports them: the dependency arrow keeps pointing from them to here.
"""

from __future__ import annotations

import dataclasses
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(
    name="sqsnn",
    help="Stochastic quantum spiking neural networks: train, evaluate, run on quantum backends, serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()

DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="digits, mnist-5k, mnist, fmnist, kmnist, mnist-dvs")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory with dataset files (else $SQSNN_DATA_DIR).", envvar="SQSNN_DATA_DIR"),
]


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


def _parse_hidden(hidden: str) -> list[int]:
    try:
        widths = [int(h) for h in hidden.split(",") if h.strip()] if hidden.strip() else []
    except ValueError:
        _fail(f"--hidden takes comma-separated widths such as 128 or 256,128; got {hidden!r}")
    if any(w < 1 for w in widths):
        _fail(f"--hidden widths must be positive; got {hidden!r}")
    return widths


@app.command()
def train(
    dataset: DatasetOpt = "digits",
    hidden: Annotated[str | None, typer.Option(help="Hidden widths, comma-separated ('' for none).")] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    mode: Annotated[str, typer.Option(help="quantum, memoryless or official")] = "quantum",
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Adam learning rate (cosine-decayed).")] = None,
    lr_scaling: Annotated[str | None, typer.Option(help="fan_in (weights: lr * 1000 / inputs) or none")] = None,
    steps: Annotated[int | None, typer.Option("--T", min=1, help="Time steps per sample.")] = None,
    p_max: Annotated[float | None, typer.Option(help="Rate-coding ceiling.")] = None,
    loss: Annotated[str | None, typer.Option(help="counts or probs")] = None,
    logit_scale: Annotated[float | None, typer.Option(help="Scale of the output rates inside the softmax.")] = None,
    surrogate: Annotated[str, typer.Option(help="sigmoid or straight-through")] = "sigmoid",
    bias: Annotated[bool, typer.Option(help="Trainable bias currents.")] = False,
    direct: Annotated[bool, typer.Option(help="Direct input-to-output synapses.")] = False,
    seed: int = 0,
    limit_train: Annotated[int | None, typer.Option(help="Use a stratified subset of the training set.")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Share of the training split held out (stratified) to choose the epoch; 0: none.")
    ] = 0.1,
    data_dir: DataDirOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the trained model here (.pt).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float64 (default) or float32: the training precision.")] = None,
    eval_runs: Annotated[
        int | None, typer.Option(min=1, help="Single-shot runs of each validation / test sample, accuracy averaged.")
    ] = None,
) -> None:
    """Train an SQSNN with surrogate-gradient BPTT and print validation and test accuracy, spike rates and
    parameters. Flags not given take the dataset's defaults (sqsnn.training.defaults), then the trainer's."""
    from sqsnn.datasets import load_dataset
    from sqsnn.network import NetworkConfig, SQSNetwork
    from sqsnn.training.bptt import TrainConfig
    from sqsnn.training.bptt import train as run_training
    from sqsnn.training.defaults import DATASET_DEFAULTS, defaults_for

    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "lr_scaling": lr_scaling,
        "loss": loss,
        "logit_scale": logit_scale,
        "T": steps,
        "p_max": p_max,
        "dtype": dtype,
        "eval_runs": eval_runs,
    }
    preset = defaults_for(dataset)
    settings = {k: v for k, v in given.items() if v is not None}
    from_dataset = {k: v for k, v in preset.train.items() if k not in settings}
    widths = ",".join(map(str, preset.hidden)) if hidden is None else hidden
    try:
        data = load_dataset(dataset, data_dir, limit_train=limit_train, val_fraction=val_fraction)
        if data.kind == "frames":
            settings["T"] = int(data.x_train.shape[1])
        net = SQSNetwork(
            NetworkConfig(
                sizes=[data.n_features, *_parse_hidden(widths), data.n_classes],
                mode=mode,  # type: ignore[arg-type]
                bias=bias,
                direct=direct,
                surrogate=surrogate,  # type: ignore[arg-type]
                seed=seed,
                **preset.network,
            )
        )
        config = TrainConfig(seed=seed, **{**from_dataset, **settings})
    except ValueError as exc:
        _fail(str(exc))
    preset_name = f"{dataset} default" if dataset in DATASET_DEFAULTS else "generic default"
    origin = {k: "flag" if k in settings else preset_name if k in from_dataset else "default" for k in given}
    chosen = ", ".join(
        [f"{k} {getattr(config, k)} ({origin[k]})" for k in given]
        + [f"{k} {v} ({preset_name})" for k, v in preset.network.items()]
    )
    console.print(f"settings: {chosen}")
    n_val = 0 if data.x_val is None else data.x_val.shape[0]
    console.print(
        f"[bold]{dataset}[/bold] {data.x_train.shape[0]} train / {n_val} val / {data.x_test.shape[0]} test · network "
        f"{'-'.join(map(str, net.config.sizes))} · mode {mode} · T {config.T} · "
        f"{net.num_parameters():,} parameters"
    )
    batches = -(-len(data.y_train) // config.batch_size)
    with Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("train", total=batches * config.epochs, epoch=1, loss=float("nan"))

        def on_batch(epoch: int, index: int, value: float) -> None:
            progress.update(task, advance=1, epoch=epoch, loss=value)

        def on_epoch(metrics: Any, _checkpoint: Any) -> None:
            held_out = (
                f"val acc {metrics.val_accuracy:.2%}"
                if metrics.val_accuracy is not None
                else f"test acc {metrics.test_accuracy:.2%}"
            )
            progress.console.print(
                f"epoch {metrics.epoch}: train loss {metrics.train_loss:.3f}, train acc "
                f"{metrics.train_accuracy:.2%}, {held_out}, spike rates "
                f"{', '.join(f'{r:.3f}' for r in metrics.spike_rates)} ({metrics.seconds:.1f} s)"
            )

        result = run_training(net, data, config, on_batch=on_batch, on_epoch=on_epoch)
    table = Table(title="result")
    for column in ("epoch kept", "val accuracy", "test accuracy", "test spike rate per layer", "parameters"):
        table.add_column(column)
    table.add_row(
        str(result.best_epoch),
        f"{result.val_accuracy:.2%}" if result.val_accuracy is not None else "–",
        f"{result.test_accuracy:.2%}",
        " / ".join(f"{r:.3f}" for r in result.spike_rates),
        f"{net.num_parameters():,}",
    )
    console.print(table)
    runs = f", each in {config.eval_runs} single-shot runs, accuracy averaged" if config.eval_runs > 1 else ""
    if result.val_accuracy is not None:
        console.print(
            f"epoch {result.best_epoch} had the best validation accuracy ({data.x_val.shape[0]} samples held "  # type: ignore[union-attr]
            f"out of the training split{runs}); its weights are kept and the test split was evaluated once with them."
        )
    else:
        console.print("no validation split (--val-fraction 0): the last epoch is kept, its test accuracy shown.")
    if out is not None:
        net.save(
            out,
            dataset=dataset,
            train_config=dataclasses.asdict(config),
            metrics=[dataclasses.asdict(m) for m in result.metrics],
            best_epoch=result.best_epoch,
            val_accuracy=result.val_accuracy,
            test_accuracy=result.test_accuracy,
        )
        console.print(f"model written to {out}")


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A model file written by 'sqsnn train --out'.")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Default: the training dataset.")] = None,
    seed: int = 1,
    data_dir: DataDirOpt = None,
) -> None:
    """Evaluate a saved model on a dataset's test split (single-shot)."""
    import torch

    from sqsnn.datasets import load_dataset
    from sqsnn.network import load_model
    from sqsnn.training.bptt import evaluate as run_eval

    try:
        model, meta = load_model(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        _fail(f"{exc} (write one with 'sqsnn train --out model.pt')")
    name = dataset or meta.get("dataset")
    if name is None:
        _fail("the checkpoint does not record its dataset; pass --dataset")
    train_config = meta.get("train_config", {})
    try:
        data = load_dataset(str(name), data_dir)
    except ValueError as exc:
        _fail(str(exc))
    result = run_eval(
        model,  # type: ignore[arg-type]
        data.x_test,
        data.y_test,
        data.kind,
        T=int(train_config.get("T", 5)),
        p_max=float(train_config.get("p_max", 0.5)),
        generator=torch.Generator().manual_seed(seed),
    )
    console.print(
        f"{name}: test accuracy {result.accuracy:.2%}, spike rates "
        f"{', '.join(f'{r:.3f}' for r in result.spike_rates)}, {model.num_parameters():,} parameters"  # type: ignore[operator]
    )


@app.command()
def datasets() -> None:
    """List the datasets, where their files come from and how they are split (fits 80 columns)."""
    from rich import box

    from sqsnn.datasets import list_datasets

    infos = list_datasets()
    summary = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    summary.add_column("name", no_wrap=True)
    summary.add_column("input", no_wrap=True)
    summary.add_column("classes", no_wrap=True, justify="right")
    summary.add_column("train / test", no_wrap=True, justify="right")
    for info in infos:
        h, w = info.image_shape
        shape = f"{h}×{w}" if info.steps is None else f"T {info.steps} × {h}×{w}"
        sizes = "your files" if info.n_train is None or info.n_test is None else f"{info.n_train:,} / {info.n_test:,}"
        summary.add_row(info.name, shape, str(info.n_classes), sizes)
    # the splits end with the same validation clause: said once under the table when they all share it
    clauses = {info.split.partition("; validation: ")[2] for info in infos}
    shared = clauses.pop() if len(clauses) == 1 else ""
    details = Table.grid(padding=(0, 2))
    details.add_column(no_wrap=True)
    details.add_column(overflow="fold")
    for info in infos:
        split = info.split.partition("; validation: ")[0] if shared else info.split
        options = f" Options: {', '.join(info.options)}." if info.options else ""
        details.add_row(info.name, f"{info.source}. Split: {split}.{options}")
    console.print(summary)
    console.print()
    console.print(details)
    if shared:
        console.print(f"\nValidation, for every dataset: {shared}.")


def _mount_plugins() -> None:
    """Add the sub-commands other installed packages register under the ``sqsnn.cli`` entry points."""
    if os.environ.get("SQSNN_NO_PLUGINS"):
        return
    for entry in entry_points(group="sqsnn.cli"):
        try:
            obj = entry.load()
        except ImportError as exc:  # an optional extra is not installed
            console.print(f"[yellow]note:[/yellow] '{entry.name}' commands unavailable ({exc})", style="dim")
            continue
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=entry.name)
        else:
            app.command(name=entry.name)(obj)


def main() -> None:
    """Console entry point."""
    _mount_plugins()
    app()


if __name__ == "__main__":
    main()
