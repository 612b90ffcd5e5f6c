"""Service commands, mounted into ``sqsnn`` through the ``sqsnn.cli`` entry points:
``sqsnn serve``, ``sqsnn demo``, ``sqsnn prune`` and ``sqsnn keys create --owner NAME``."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from service.auth import create_key
from service.embedded import EmbeddedService, ensure_key, migrate, start_worker, stop_process
from service.sse import parse_sse
from workers.db import make_sessionmaker
from workers.settings import Settings

console = Console()
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@keys_app.command("create")
def keys_create(owner: Annotated[str, typer.Option(help="who the key belongs to")]) -> None:
    """Create an API key for OWNER and print it once (only its hash is stored)."""
    settings = _settings()
    if settings.database_url is None:
        migrate(settings)
    with make_sessionmaker(settings)() as s:
        try:
            key = create_key(s, settings, owner)
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    console.print(f"API key for [bold]{owner}[/bold] (shown once, store it now):")
    print(key)


def prune() -> None:
    """Apply the retention settings once: checkpoints beyond the newest SQSNN_CHECKPOINT_KEEP of each job (the
    best stays) and progress events of jobs finished SQSNN_PROGRESS_EVENT_RETENTION_S ago. Run it from cron."""
    from service.retention import prune as apply_retention

    settings = _settings()
    sessions = make_sessionmaker(settings)
    with sessions() as s:
        pruned = apply_retention(s, settings)
    console.print(
        f"deleted {pruned.checkpoints} checkpoints ({pruned.checkpoint_bytes} bytes) "
        f"and {pruned.progress_events} progress events"
    )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker", help="also run a worker (default: when embedded)")
    ] = None,
    migrations: Annotated[
        bool | None, typer.Option("--migrate/--no-migrate", help="alembic upgrade head first (default: embedded)")
    ] = None,
) -> None:
    """Run the REST API; embedded (no SQSNN_DATABASE_URL / SQSNN_BROKER_URL) it also runs a worker on SQLite
    and a file-system broker under SQSNN_HOME."""
    import uvicorn

    from service.app import create_app

    settings = _settings()
    if migrations if migrations is not None else settings.embedded:
        migrate(settings)
    run_worker = worker if worker is not None else settings.embedded
    if settings.embedded:
        console.print(f"embedded mode: SQLite and file broker under [bold]{settings.home}[/bold]")
        key = ensure_key(settings, "local")
        if key:
            console.print("first start: API key for owner 'local' (shown once, store it now):")
            print(key, flush=True)
    proc = start_worker(settings, settings.home / "worker.log") if run_worker else None
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the worker is stopped
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        if proc is not None:
            stop_process(proc)


def _stream(client: httpx.Client, job_id: str, epochs: int) -> None:
    """Print a job's SSE stream as a progress bar and one table row per epoch; a stream that ends before the
    job (SQSNN_SSE_MAX_S) is resumed with ``Last-Event-ID``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    table = Table("epoch", "train loss", "train acc", "test acc", "seconds", title="training")
    last_id: str | None = None
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("queued", total=epochs)
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=None) as resp:
                for ev in parse_sse(resp.iter_lines()):
                    last_id = ev.get("id", last_id)
                    data: dict[str, Any] = ev["data"]
                    if ev.get("event") == "state":
                        bar.update(task, description=f"{data['state']} {data.get('substate') or ''}".strip())
                    elif ev.get("event") == "progress":
                        bar.update(
                            task, description=f"epoch {data['epoch']} batch {data['batch']} loss {data['loss']:.3f}"
                        )
                    elif ev.get("event") == "epoch":
                        bar.update(task, completed=data["epoch"])
                        table.add_row(
                            str(data["epoch"]),
                            f"{data['train_loss']:.4f}",
                            f"{data['train_accuracy']:.3f}",
                            f"{data['test_accuracy']:.3f}",
                            f"{data['seconds']:.1f}",
                        )
            if client.get(f"/v1/jobs/{job_id}").json()["state"] in ("succeeded", "failed", "cancelled"):
                break
    console.print(table)


def demo(
    epochs: Annotated[int, typer.Option(min=1, help="training epochs")] = 20,
    hidden: Annotated[int, typer.Option(min=1, help="hidden SQS neurons")] = 128,
    limit_train: Annotated[int | None, typer.Option(min=1, help="use only this many training images")] = None,
    home: Annotated[Path | None, typer.Option(help="state directory (default: a new temporary one)")] = None,
) -> None:
    """Start the embedded service, train an SQSNN on `digits` through the REST API, stream its progress and
    print the final test accuracy."""
    settings = Settings(
        environment="development",
        home=home or Path(tempfile.mkdtemp(prefix="sqsnn-demo-")),
        database_url=None,
        broker_url=None,
        redis_url=None,
    )
    console.print(f"starting the embedded service (state in {settings.home}) ...")
    with EmbeddedService(settings) as svc:
        key = svc.key("demo")
        with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            body = {
                "kind": "train",
                "name": "digits-demo",
                "model": {"hidden": [hidden], "mode": "quantum"},
                "dataset": {"name": "digits", "limit_train": limit_train},
                # the digits defaults chosen on validation (sqsnn.training.defaults): every step of an 8x8
                # image spikes at its intensity (p_max 1), loss on the mean output probability
                "encoder": {"T": 5, "p_max": 1.0},
                "training": {"method": "bptt", "epochs": epochs, "loss": "probs"},
                "backend": "exact",
            }
            r = client.post("/v1/jobs", json=body)
            r.raise_for_status()
            job_id = r.json()["id"]
            console.print(f"submitted job {job_id} to {svc.url}/v1/jobs")
            _stream(client, job_id, epochs)
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] != "succeeded":
                console.print(f"[red]job {job['state']}:[/red] {job['failure_reason']}")
                raise typer.Exit(1)
            result = client.get(f"/v1/jobs/{job_id}/result").json()["result"]
    console.print(f"model {result['model_id']}")
    console.print(f"[bold green]final test accuracy: {result['test_accuracy']:.4f}[/bold green]")


app = typer.Typer(help="sqsnn job service.", no_args_is_help=True)
app.command()(serve)
app.command()(demo)
app.command()(prune)
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app()
