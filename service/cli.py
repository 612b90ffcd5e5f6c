"""Service commands, mounted into ``sqsnn`` through the ``sqsnn.cli`` entry points:
``sqsnn serve``, ``sqsnn demo``, ``sqsnn prune`` and ``sqsnn keys create --owner NAME``."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.auth import create_key
from service.embedded import EmbeddedService, ensure_key, migrate, start_worker, stop_process, worker_log
from sqsnn.client import Client
from sqsnn.client_cli import print_outcome, watch_job
from sqsnn.training.defaults import DATASET_DEFAULTS
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
    proc = None
    if run_worker:
        log = worker_log(settings)
        proc = start_worker(settings, log)
        console.print(f"worker log: [bold]{log}[/bold]")
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exception so the worker is stopped
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        if proc is not None:
            stop_process(proc)


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
        console.print(f"worker log: {svc.worker_log}")
        with Client(svc.url, svc.key("demo")) as client:
            digits = DATASET_DEFAULTS["digits"].train
            body = {
                "kind": "train",
                "name": "digits-demo",
                "model": {"hidden": [hidden], "mode": "quantum"},
                "dataset": {"name": "digits", "limit_train": limit_train},
                # the digits defaults chosen on validation (sqsnn.training.defaults): T steps per image, each
                # step spiking at the pixel's intensity up to p_max, loss on the mean output probability
                "encoder": {"T": digits["T"], "p_max": digits["p_max"]},
                # ... and each validation / test image evaluated in eval_runs single-shot runs, accuracy averaged
                "training": {
                    "method": "bptt",
                    "epochs": epochs,
                    "loss": digits["loss"],
                    "eval_runs": digits["eval_runs"],
                },
                "backend": "exact",
            }
            job = client.submit(body)
            console.print(f"submitted job {job['id']} to {svc.url}/v1/jobs")
            print_outcome(watch_job(client, job["id"]))
            result = client.result(job["id"])["result"]
    console.print(f"model {result['model_id']}")
    console.print(f"[bold green]final test accuracy: {result['test_accuracy']:.4f}[/bold green]")


app = typer.Typer(help="sqsnn job service.", no_args_is_help=True)
app.command()(serve)
app.command()(demo)
app.command()(prune)
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app()
