"""``sqsnn jobs ...`` and ``sqsnn models ...``: the job service from the command line, on :class:`sqsnn.client.Client`.

Every command takes ``--url`` and ``--api-key`` (else ``SQSNN_URL`` / ``SQSNN_API_KEY``, else the client config
file, see :mod:`sqsnn.client`). Registered through the ``sqsnn.cli`` entry points (``jobs``, ``models``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from sqsnn.client import TERMINAL_STATES, ApiError, Client, ClientConfigError, Event

console = Console()
jobs_app = typer.Typer(help="Jobs on a remote sqsnn service: submit, list, get, watch, cancel, result.")
models_app = typer.Typer(help="Models on a remote sqsnn service: upload, download, list.")

UrlOpt = Annotated[str | None, typer.Option("--url", help="service URL (else $SQSNN_URL, the config file)")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key (else $SQSNN_API_KEY, the config file)")]
JobArg = Annotated[str, typer.Argument(help="job id")]


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextmanager
def _client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client, with the service's errors printed as one line and a non-zero exit."""
    try:
        with Client(url, api_key) as client:
            yield client
    except ClientConfigError as exc:
        _fail(str(exc), 2)
    except ApiError as exc:
        _fail(str(exc))
    except httpx.TransportError as exc:
        _fail(f"cannot reach the service: {exc} (check --url / SQSNN_URL)")


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


def _read_spec(spec: str) -> dict[str, Any]:
    """A job body from a JSON file, ``-`` (standard input) or inline JSON text."""
    text = sys.stdin.read() if spec == "-" else Path(spec).read_text() if Path(spec).is_file() else spec
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"the job spec is not JSON ({exc}); give a .json file, '-' for stdin, or inline JSON", 2)
    if not isinstance(body, dict):
        _fail('the job spec must be a JSON object such as {"kind": "train", ...}', 2)
    return body


def _table(*columns: str) -> Table:
    """A listing that fits 80 columns: the full id (never wrapped, it is what the other commands take)
    and compact columns after it."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
    table.add_column("id", no_wrap=True)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def _when(row: dict[str, Any]) -> str:
    """``created_at`` as ``MM-DD HH:MM`` (UTC; a time without a zone is taken as UTC)."""
    at = datetime.fromisoformat(row["created_at"])
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).strftime("%m-%d %H:%M")


def _accuracy(epoch: dict[str, Any]) -> str:
    """An epoch event's held-out accuracy: the test split's, or the validation split's (``val ...``) where
    the job holds one out."""
    if epoch.get("test_accuracy") is not None:
        return f"{epoch['test_accuracy']:.3f}"
    return f"val {epoch['val_accuracy']:.3f}"


def _describe(event: Event) -> str | None:
    """One line for the progress bar, or None for events that do not change it."""
    d = event.data
    if event.kind == "state":
        return " ".join(str(v) for v in (d.get("state"), d.get("substate"), d.get("reason")) if v)
    if event.kind == "progress" and "loss" in d:
        return f"epoch {d.get('epoch')} batch {d.get('batch')} loss {d['loss']:.3f}"
    if event.kind == "epoch":
        return f"epoch {d['epoch']}: loss {d['train_loss']:.3f}, held-out accuracy {_accuracy(d)}"
    if event.kind == "spikes":
        return f"samples from {d.get('start')}: {len(d.get('predictions', []))} predicted"
    return None


def watch_job(client: Client, job_id: str) -> dict[str, Any]:
    """Follow a job's event stream with a progress bar (the job's own ``progress``) until it finishes;
    prints a table of the finished epochs; returns the finished job."""
    table = Table("epoch", "train loss", "train acc", "test acc", "seconds", title="epochs")
    with Progress(
        TextColumn("[bold]{task.fields[state]}[/bold]"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    ) as bar:
        job = client.get(job_id)
        task: TaskID = bar.add_task("", total=1.0, completed=job["progress"], state=job["state"])
        for event in client.events(job_id):
            if event.kind == "epoch":
                d = event.data
                table.add_row(
                    str(d["epoch"]),
                    f"{d['train_loss']:.4f}",
                    f"{d['train_accuracy']:.3f}",
                    _accuracy(d),
                    f"{d['seconds']:.1f}",
                )
            line = _describe(event)
            if line is None:
                continue
            if event.kind != "progress":  # progress events come per batch: the job row is read on the others
                job = client.get(job_id)
            bar.update(task, description=line, completed=job["progress"], state=job["state"])
        job = client.get(job_id)
        bar.update(task, completed=job["progress"], state=job["state"])
    if table.row_count:
        console.print(table)
    return job


def print_outcome(job: dict[str, Any]) -> None:
    """Print how the finished ``job`` ended; exit 1 unless it succeeded."""
    if job["state"] == "succeeded":
        console.print(f"[green]job {job['id']} succeeded[/green] on {job['backend_used'] or job['backend']}")
        return
    _fail(f"job {job['id']} {job['state']}: {job['failure_reason'] or 'no reason recorded'}")


@jobs_app.command("submit")
def submit(
    spec: Annotated[str, typer.Argument(help="job body: a JSON file, '-' for stdin, or inline JSON")],
    watch: Annotated[bool, typer.Option("--watch", help="follow the job until it finishes")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="repeat-safe submission key")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Submit a training or inference job (see docs/service.md for the body); prints its id."""
    body = _read_spec(spec)
    with _client(url, api_key) as client:
        job = client.submit(body, idempotency_key=idempotency_key)
        console.print(f"submitted {job['kind']} job [bold]{job['id']}[/bold] on {job['backend']} ({job['state']})")
        if watch:
            print_outcome(watch_job(client, job["id"]))


@jobs_app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed or cancelled")] = None,
    kind: Annotated[str | None, typer.Option(help="train or infer")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The newest jobs: id, kind, state, backend, progress, created (UTC)."""
    with _client(url, api_key) as client:
        jobs = client.list(state=state, kind=kind, limit=limit)
    table = _table("kind", "state", "backend", "done", "created")
    for j in jobs:
        table.add_row(
            j["id"], j["kind"], j["state"], j["backend_used"] or j["backend"], f"{j['progress']:.0%}", _when(j)
        )
    console.print(table if jobs else "no jobs")


@jobs_app.command("get")
def get(job_id: JobArg, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """A job as JSON: state, progress, epochs, hardware runs, shots, cost."""
    with _client(url, api_key) as client:
        _print_json(client.get(job_id))


@jobs_app.command("watch")
def watch(job_id: JobArg, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Follow a job's event stream with a progress bar until it finishes; exit 1 unless it succeeded."""
    with _client(url, api_key) as client:
        job = client.get(job_id)
        if job["state"] not in TERMINAL_STATES:
            job = watch_job(client, job_id)
        print_outcome(job)


@jobs_app.command("cancel")
def cancel(job_id: JobArg, url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel a job (a running one stops between two batches)."""
    with _client(url, api_key) as client:
        job = client.cancel(job_id)
    console.print(f"job {job['id']}: {job['state']}" + (" (cancel requested)" if job["cancel_requested"] else ""))


@jobs_app.command("result")
def result(
    job_id: JobArg,
    out: Annotated[Path | None, typer.Option(help="write the result JSON here instead of printing it")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """The result of a succeeded job: model id and accuracy (training), predictions and spikes (inference)."""
    with _client(url, api_key) as client:
        res = client.result(job_id)
    if out is not None:
        out.write_text(json.dumps(res, indent=1))
        console.print(f"result written to {out}")
        return
    summary = {k: v for k, v in res["result"].items() if k != "spikes"}
    _print_json({**res, "result": summary})
    if "spikes" in res["result"]:
        console.print("[dim](spike trains left out; --out FILE writes everything)[/dim]")


@models_app.command("upload")
def upload(
    path: Annotated[Path, typer.Argument(help="a model file written by 'sqsnn train --out'", exists=True)],
    name: Annotated[str | None, typer.Option(help="a name for the model")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Upload a locally trained model; prints its id (use it as model_id of inference jobs)."""
    with _client(url, api_key) as client:
        model = client.upload_model(path, name=name)
    sizes = "-".join(map(str, model["config"]["network"]["sizes"]))
    console.print(f"uploaded model [bold]{model['id']}[/bold] ({sizes}, {model['size_bytes']} bytes)")


@models_app.command("download")
def download(
    model_id: Annotated[str, typer.Argument(help="model id")],
    out: Annotated[Path | None, typer.Option(help="where to write it (default: sqsnn-model-<id>.safetensors)")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Download a model file (checked against the server's sha256); 'sqsnn evaluate' reads it."""
    with _client(url, api_key) as client:
        path = client.download_model(model_id, out or Path(f"sqsnn-model-{model_id}.safetensors"))
    console.print(f"model written to {path}")


@models_app.command("list")
def list_models(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20, url: UrlOpt = None, api_key: KeyOpt = None
) -> None:
    """The newest models: id, name, test accuracy, size, created (UTC)."""
    with _client(url, api_key) as client:
        models = client.models(limit=limit)
    table = _table("name", "test acc", "bytes", "created")
    for m in models:
        acc = "" if m["test_accuracy"] is None else f"{m['test_accuracy']:.3f}"
        table.add_row(m["id"], m["name"] or "", acc, str(m["size_bytes"]), _when(m))
    console.print(table if models else "no models")
