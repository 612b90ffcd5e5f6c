"""The Python client and the ``sqsnn jobs`` / ``sqsnn models`` commands against the served API with a real
worker; model upload (``POST /v1/models``), estimates (``POST /v1/estimates``) and malformed JSON."""

from __future__ import annotations

import hashlib
import json
import pickle
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from typer.testing import CliRunner

from backends.common import derive_seed
from backends.estimate import estimate_network
from backends.registry import get_backend
from sqsnn.baselines.lif import LIFConfig, LIFNetwork
from sqsnn.client import ApiError, Client, ClientConfigError, parse_sse
from sqsnn.client_cli import jobs_app, models_app
from sqsnn.datasets import load_dataset
from sqsnn.encoders import encode
from sqsnn.model_io import load_model_file
from sqsnn.network import NetworkConfig, SQSNetwork
from workers.spikes import pack

pytestmark = pytest.mark.service
T, P_MAX = 6, 0.7  # not the service's default encoder (5, 0.5): the upload must carry them over


@pytest.fixture
def key(served) -> str:
    return served.key(f"client-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A model saved the way ``sqsnn train --out`` saves it (dataset name and train_config metadata)."""
    net = SQSNetwork(NetworkConfig(sizes=[64, 12, 10], bias=True, seed=11))
    path = tmp_path / "m.pt"
    net.save(path, dataset="digits", train_config={"T": T, "p_max": P_MAX, "epochs": 1}, test_accuracy=0.25)
    return path


def test_parse_sse_follows_the_event_stream_format() -> None:
    lines = [": keep-alive", "id: 7", "event: epoch", 'data: {"a":', "data: 1}", "", "data: x", "", "id: 9", ""]
    assert list(parse_sse(lines)) == [("7", "epoch", '{"a":\n1}'), ("7", "message", "x")]


def test_settings_come_from_arguments_then_environment_then_the_config_file(tmp_path, monkeypatch) -> None:
    config = tmp_path / "client.toml"
    config.write_text('url = "http://from-file:1/"\napi_key = "file-key"\n')
    monkeypatch.setenv("SQSNN_CLIENT_CONFIG", str(config))
    monkeypatch.delenv("SQSNN_URL", raising=False)
    monkeypatch.delenv("SQSNN_API_KEY", raising=False)
    with Client() as c:
        assert c.url == "http://from-file:1" and c._http.headers["Authorization"] == "Bearer file-key"
    monkeypatch.setenv("SQSNN_URL", "http://from-env:2")
    monkeypatch.setenv("SQSNN_API_KEY", "env-key")
    with Client() as c:
        assert c.url == "http://from-env:2" and c._http.headers["Authorization"] == "Bearer env-key"
    with Client("http://arg:3", "arg-key") as c:
        assert c.url == "http://arg:3" and c._http.headers["Authorization"] == "Bearer arg-key"
    monkeypatch.delenv("SQSNN_API_KEY")
    config.write_text("url = [")
    with pytest.raises(ClientConfigError, match="not valid TOML"):
        Client()
    config.unlink()
    with pytest.raises(ClientConfigError, match="no API key"):
        Client()


def test_train_follow_events_download_the_model(served, worker, key, train_body, tmp_path) -> None:
    with Client(served.url, key) as c:
        job = c.submit(train_body(), idempotency_key="client-train")
        assert c.submit(train_body(), idempotency_key="client-train")["id"] == job["id"]
        events = list(c.events(job["id"]))
        ids = [e.id for e in events]
        assert ids == sorted(set(ids)), "every event once, in id order"
        assert [e.data["epoch"] for e in events if e.kind == "epoch"] == [1, 2]
        assert events[-1].kind == "state" and events[-1].data["state"] == "succeeded"
        assert list(c.events(job["id"], after=ids[-2])) == events[-1:]
        done = c.wait(job["id"], timeout=60)
        assert done["state"] == "succeeded" and done["progress"] == 1.0
        assert job["id"] in [j["id"] for j in c.list(state="succeeded")]
        model_id = c.result(job["id"])["result"]["model_id"]
        path = c.download_model(model_id, tmp_path / "dl.safetensors")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == c.model(model_id)["sha256"]
        net, meta = load_model_file(path)
        assert isinstance(net, SQSNetwork) and net.config.sizes == [64, 16, 10] and meta["job_id"] == job["id"]
        with pytest.raises(ApiError) as err:
            c.result(str(uuid.uuid4()))
        assert err.value.status == 404 and err.value.field == "path.job_id"


def _local_inference(path: Path, images: torch.Tensor, seed: int) -> tuple[list[int], list[list[str]]]:
    """What the worker computes for one chunk on ``exact`` (workers.inference._run_chunk), recomputed here."""
    net, _ = load_model_file(path)
    gen = torch.Generator().manual_seed(derive_seed(seed, 0) or 0)
    with torch.no_grad():
        out = net(encode(images, "static", T, P_MAX, gen), gen)
    return [int(v) for v in net.predict(out).tolist()], [pack(s) for s in out.spikes]


def test_cli_uploads_a_model_and_runs_inference_on_it(served, worker, key, model_file, tmp_path, monkeypatch) -> None:
    """The stored model is the uploaded one (predictions and every spike equal a local run of the file with
    the encoder it recorded), through ``sqsnn models upload`` and ``sqsnn jobs submit --watch``."""
    monkeypatch.setenv("SQSNN_URL", served.url)
    monkeypatch.setenv("SQSNN_API_KEY", key)
    runner = CliRunner()
    up = runner.invoke(models_app, ["upload", str(model_file), "--name", "local"])
    assert up.exit_code == 0, up.output
    with Client() as c:
        (model,) = c.models()
        assert model["name"] == "local" and model["test_accuracy"] == 0.25
        stored = c.model(model["id"])
        assert stored["config"]["encoder"] == {"T": T, "p_max": P_MAX} and stored["config"]["kind"] == "static"
        assert model["id"] in up.output
    data = load_dataset("digits")
    images = data.x_test[:20]
    spec = {
        "kind": "infer",
        "model_id": model["id"],
        "inputs": {"source": "images", "images": images.tolist(), "labels": data.y_test[:20].tolist()},
        "seed": 5,
    }
    spec_path = tmp_path / "infer.json"
    spec_path.write_text(json.dumps(spec))
    run = runner.invoke(jobs_app, ["submit", str(spec_path), "--watch"])
    assert run.exit_code == 0, run.output
    assert "succeeded" in run.output
    with Client() as c:
        (job,) = c.list(kind="infer")
        result = c.result(job["id"])["result"]
    predictions, spikes = _local_inference(model_file, images, seed=5)
    assert result["predictions"] == predictions
    assert [layer["samples"] for layer in result["spikes"]["layers"]] == spikes
    assert result["spikes"]["T"] == T
    out = tmp_path / "result.json"
    assert runner.invoke(jobs_app, ["result", job["id"], "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["result"]["predictions"] == predictions
    listed = runner.invoke(jobs_app, ["list", "--kind", "infer"])
    assert listed.exit_code == 0 and job["id"] in listed.output
    dl = tmp_path / "back.safetensors"
    assert runner.invoke(models_app, ["download", model["id"], "--out", str(dl)]).exit_code == 0
    back, _ = load_model_file(dl)
    original, _ = load_model_file(model_file)
    assert all(
        torch.equal(a, b) for a, b in zip(back.state_dict().values(), original.state_dict().values(), strict=True)
    )


def test_cli_reports_service_errors_in_one_line(served, key, monkeypatch) -> None:
    monkeypatch.setenv("SQSNN_URL", served.url)
    monkeypatch.setenv("SQSNN_API_KEY", "sqsnn_not-a-key")
    r = CliRunner().invoke(jobs_app, ["list"])
    assert r.exit_code == 1 and "401: invalid API key" in r.output
    monkeypatch.setenv("SQSNN_API_KEY", key)
    r = CliRunner().invoke(jobs_app, ["submit", '{"kind": "train", "dataset": {"name": "cifar10"}}'])
    assert r.exit_code == 1 and "422" in r.output and "dataset" in r.output
    r = CliRunner().invoke(jobs_app, ["submit", "{not json"])
    assert r.exit_code == 2 and "not JSON" in r.output


def _upload(served, key: str, content: bytes, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"}
    return httpx.post(f"{served.url}/v1/models", content=content, headers=headers, params=params, timeout=30)


def test_upload_refuses_what_is_not_a_valid_sqsnn_file(served, key, model_file, tmp_path) -> None:
    r = httpx.post(f"{served.url}/v1/models", content=model_file.read_bytes())
    assert r.status_code == 401
    r = _upload(served, key, pickle.dumps({"format": "sqsnn-model"}))
    assert r.status_code == 422 and r.json()["field"] == "body" and "safetensors" in r.json()["message"]
    r = _upload(served, key, b"")
    assert r.status_code == 422 and "empty body" in r.json()["message"]
    lif = tmp_path / "lif.pt"
    LIFNetwork(LIFConfig(sizes=[64, 8, 10])).save(lif)
    r = _upload(served, key, lif.read_bytes())
    assert r.status_code == 422 and r.json()["field"] == "body.metadata.kind" and "only SQSNNs" in r.json()["message"]
    data = bytearray(model_file.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["layers.0.weight"]["shape"] = [13, 64]
    forged = json.dumps(header, separators=(",", ":")).encode()
    assert len(forged) <= n
    r = _upload(served, key, bytes(data[:8]) + forged.ljust(n) + bytes(data[8 + n :]))
    assert r.status_code == 422 and "shape [13, 64]" in r.json()["message"]
    big = b"\0" * (served.app.state.settings.max_body_bytes + 1)
    assert _upload(served, key, big).status_code == 413
    with Client(served.url, key) as c:
        assert c.models() == []


def test_upload_returns_201_with_location_and_the_model(served, key, model_file) -> None:
    r = _upload(served, key, model_file.read_bytes(), name="n1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/models/{body['id']}"
    assert body["config"]["network"]["sizes"] == [64, 12, 10] and body["job_id"] is None
    with Client(served.url, key) as c:
        assert c.model(body["id"]) == body


def test_estimates_price_a_job_without_submitting_it(served, key, model_file) -> None:
    with Client(served.url, key) as c:
        model = c.upload_model(model_file)
        spec = {"kind": "infer", "model_id": model["id"], "backend": "aer",
                "inputs": {"source": "dataset", "name": "digits", "start": 0, "stop": 40}}  # fmt: skip
        est = c.estimate(spec)
        ref = estimate_network([64, 12, 10], T, 40, get_backend("aer"))
        assert est["samples"] == 40 and est["T"] == T
        assert est["total"]["shots"] == ref.shots and est["total"]["tasks"] == ref.pubs
        assert [layer["neurons"] for layer in est["layers"]] == [12, 10]
        train = c.estimate({"kind": "train", "dataset": {"name": "digits", "limit_train": 64}, "model": {"hidden": [4]},
                            "training": {"batch_size": 32}})  # fmt: skip
        assert train["batches_per_epoch"] == 2 and train["total"]["shots"] == 0
        with pytest.raises(ApiError) as err:
            c.estimate({**spec, "model_id": str(uuid.uuid4())})
        assert err.value.status == 422 and err.value.field == "body.model_id"
        assert c.list() == [], "an estimate submits nothing"


def test_malformed_json_is_400_naming_the_body(served, key) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    r = httpx.post(f"{served.url}/v1/jobs", content=b'{"kind": "train",', headers=headers)
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert r.json()["message"].startswith("the body is not valid JSON") and "at character" in r.json()["message"]


def test_dashboard_page_is_served_with_a_strict_content_security_policy(served) -> None:
    r = httpx.get(f"{served.url}/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert 'id="api-key"' in r.text
    assert "/ui" not in httpx.get(f"{served.url}/openapi.json").json()["paths"]
