"""A Python client of the sqsnn job service (httpx).

>>> with Client("http://127.0.0.1:8000", "sqsnn_...") as c:          # doctest: +SKIP
...     job = c.submit({"kind": "train", "dataset": {"name": "digits"}, "model": {"hidden": [32]}})
...     done = c.wait(job["id"])
...     c.result(job["id"])["result"]["test_accuracy"]

The server URL and API key come from the arguments, else the environment (``SQSNN_URL``, ``SQSNN_API_KEY``),
else the config file (``SQSNN_CLIENT_CONFIG``, default ``$XDG_CONFIG_HOME/sqsnn/client.toml`` or
``~/.config/sqsnn/client.toml``) holding ``url = "..."`` and ``api_key = "..."``. Every error answer of the
server becomes an :class:`ApiError` carrying its status, ``message`` and ``field``.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
STREAM_READ_TIMEOUT_S = 60.0  # the server sends a keep-alive comment every SQSNN_SSE_KEEPALIVE_S (15 s)


class ApiError(RuntimeError):
    """An error answer of the server: HTTP ``status``, its one-line ``message`` and the ``field`` at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.message = message
        self.field = field


class ClientConfigError(ValueError):
    """No server URL or API key could be found, or the config file is unreadable."""


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job: its ``id``, ``kind`` (state, progress, epoch, spikes, ...) and data."""

    id: int
    kind: str
    data: dict[str, Any]


def config_path() -> Path:
    """Where the client's config file is looked for."""
    if explicit := os.environ.get("SQSNN_CLIENT_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sqsnn" / "client.toml"


def resolve(url: str | None, api_key: str | None) -> tuple[str, str]:
    """The server URL and API key: arguments, then environment, then config file (URL default
    :data:`DEFAULT_URL`). Raises :class:`ClientConfigError` when no key is found."""
    path = config_path()
    file: dict[str, Any] = {}
    url, api_key = url or os.environ.get("SQSNN_URL"), api_key or os.environ.get("SQSNN_API_KEY")
    if path.is_file() and not (url and api_key):
        try:
            file = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ClientConfigError(f"{path} is not valid TOML: {exc}") from None
    url = url or file.get("url") or DEFAULT_URL
    api_key = api_key or file.get("api_key")
    if not api_key:
        raise ClientConfigError(
            f'no API key: pass --api-key, set SQSNN_API_KEY, or write api_key = "..." in {path} '
            "(create a key with 'sqsnn keys create --owner NAME' on the server)"
        )
    return str(url).rstrip("/"), str(api_key)


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str | None, str, str]]:
    """``(id, event, data)`` of each Server-Sent Event in ``lines`` (comments skipped, multi-line data
    joined with newlines, ``event`` defaulting to ``message``), per the WHATWG event-stream format."""
    event_id: str | None = None
    kind = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if data:
                yield event_id, kind or "message", "\n".join(data)
            kind, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            kind = value
        elif name == "id":
            event_id = value


class Client:
    """The job service's REST API: jobs (submit, get, list, wait, events, result, cancel), estimates and
    models (list, get, upload, download). Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, api_key = resolve(url, api_key)
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "sqsnn-client"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing
    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        response.read()
        try:
            body = response.json()
            message, field = str(body.get("message", body)), body.get("field")
        except (json.JSONDecodeError, AttributeError):
            message, field = response.text.strip() or response.reason_phrase, None
        raise ApiError(response.status_code, message, field)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._check(self._http.request(method, path, **kwargs)).json()

    # -- jobs
    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job body (``{"kind": "train" | "infer", ...}``, as in docs/service.md); returns the queued
        job. The same ``idempotency_key`` with the same body returns the same job instead of a new one."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self._json("POST", "/v1/jobs", json=spec, headers=headers))

    def get(self, job_id: str) -> dict[str, Any]:
        """One job: state, progress, metrics per epoch, backend used, hardware runs, shots and cost."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def list(self, *, state: str | None = None, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Up to ``limit`` of the owner's jobs, newest first (following the pages), optionally filtered."""
        return self._collect("/v1/jobs", {"state": state, "kind": kind}, limit)

    def _collect(self, path: str, filters: dict[str, str | None], limit: int) -> builtins.list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < limit:
            params = {k: v for k, v in filters.items() if v is not None} | {"limit": min(100, limit - len(items))}
            page = self._json("GET", path, params=params | ({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return items

    def events(self, job_id: str, *, after: int = 0) -> Iterator[Event]:
        """The job's events with id > ``after`` in order, then live ones until the job has finished. A
        stream that drops (or reaches the server's SQSNN_SSE_MAX_S) is resumed with ``Last-Event-ID``; once
        the job has finished, one last stream delivers whatever was stored after the previous one ended."""
        last, final = after, False
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT_S)
        while True:
            headers = {"Last-Event-ID": str(last), "Accept": "text/event-stream"}
            try:
                with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout) as r:
                    self._check(r)
                    for event_id, kind, data in parse_sse(r.iter_lines()):
                        event = Event(int(event_id) if event_id else last, kind, json.loads(data))
                        last = max(last, event.id)
                        yield event
            except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError):
                pass  # reconnect after the last event received
            if final:
                return
            final = self.get(job_id)["state"] in TERMINAL_STATES

    def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 1.0) -> dict[str, Any]:
        """Poll until the job has finished (any of succeeded, failed, cancelled) and return it; raises
        ``TimeoutError`` after ``timeout`` seconds. (:meth:`events` follows a job as it runs.)"""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := self.get(job_id))["state"] not in TERMINAL_STATES:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll_s)
        return job

    def result(self, job_id: str) -> dict[str, Any]:
        """The result of a succeeded job (training: model id, accuracy; inference: predictions, spikes)."""
        return dict(self._json("GET", f"/v1/jobs/{job_id}/result"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask for the job to stop: a queued job is cancelled at once, a running one between two batches."""
        return dict(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def estimate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Shots, tasks, provider jobs and cost (USD) of a job body, without submitting it."""
        return dict(self._json("POST", "/v1/estimates", json=spec))

    # -- models
    def models(self, *, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """Up to ``limit`` of the owner's models, newest first."""
        return self._collect("/v1/models", {}, limit)

    def model(self, model_id: str) -> dict[str, Any]:
        """One model: network configuration, encoder, metrics, checksum."""
        return dict(self._json("GET", f"/v1/models/{model_id}"))

    def upload_model(self, path: str | Path, *, name: str | None = None) -> dict[str, Any]:
        """Upload a model file written by ``sqsnn train --out`` (safetensors); returns the stored model."""
        data = Path(path).read_bytes()
        params = {"name": name} if name else {}
        headers = {"Content-Type": "application/octet-stream"}
        return dict(self._json("POST", "/v1/models", content=data, params=params, headers=headers))

    def download_model(self, model_id: str, path: str | Path) -> Path:
        """Write the model's file to ``path`` (checked against the server's sha256); returns ``path``."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        digest = hashlib.sha256()
        with self._http.stream("GET", f"/v1/models/{model_id}/checkpoint") as r:
            self._check(r)
            expected = r.headers.get("X-Checksum-SHA256")
            with tmp.open("wb") as f:
                for chunk in r.iter_bytes():
                    digest.update(chunk)
                    f.write(chunk)
        if expected and digest.hexdigest() != expected:
            tmp.unlink()
            raise ApiError(502, f"downloaded file has sha256 {digest.hexdigest()}, the server announced {expected}")
        tmp.replace(path)
        return path
