"""Model files: safetensors plus a JSON description, validated before any weight is read; no pickle runs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as dump_tensors

from sqsnn.datasets import load_dataset
from sqsnn.model_io import (
    METADATA_KEY,
    ModelFileError,
    load_checkpoint,
    load_model_file,
    model_bytes,
    model_from_bytes,
    read_header,
    save_checkpoint,
)
from sqsnn.network import NetworkConfig, SQSNetwork
from sqsnn.training.bptt import TrainConfig, train
from sqsnn.training.results import Checkpoint


def _net() -> SQSNetwork:
    return SQSNetwork(NetworkConfig(sizes=[6, 4, 3], bias=True, direct=True, seed=2))


def _with(description: dict[str, object], tensors: dict[str, torch.Tensor]) -> bytes:
    return dump_tensors(tensors, metadata={METADATA_KEY: json.dumps(description)})


def test_round_trip_keeps_every_weight_bit_for_bit_and_the_metadata(tmp_path: Path) -> None:
    net = _net()
    path = tmp_path / "m.safetensors"
    path.write_bytes(model_bytes(net, dataset="digits", encoder={"T": 4, "p_max": 0.5}))
    loaded, meta = load_model_file(path)
    assert meta == {"dataset": "digits", "encoder": {"T": 4, "p_max": 0.5}}
    assert isinstance(loaded, SQSNetwork) and loaded.config == net.config
    ref = net.state_dict()
    assert set(loaded.state_dict()) == set(ref)
    assert all(torch.equal(t, ref[k]) for k, t in loaded.state_dict().items())


def test_a_model_trained_in_float32_is_stored_widened_exactly_to_float64() -> None:
    net = _net().to(torch.float32)
    loaded, _ = model_from_bytes(model_bytes(net))
    for name, t in loaded.state_dict().items():
        assert t.dtype == torch.float64, name
        assert torch.equal(t, net.state_dict()[name].double()), name


def test_the_header_is_plain_json_naming_kind_config_and_tensors() -> None:
    header, description = read_header(model_bytes(_net()))
    assert description["kind"] == "sqsnn" and description["config"]["sizes"] == [6, 4, 3]
    assert header["layers.1.direct_weight"]["shape"] == [3, 6] and header["layers.1.direct_weight"]["dtype"] == "F64"


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    """A pickle whose loading would create a file: refused, and the file is never created."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    raw = pickle.dumps(Payload())
    with pytest.raises(ModelFileError, match=r"header length|safetensors"):
        model_from_bytes(raw)
    legacy = tmp_path / "legacy.pt"
    torch.save({"format": "sqsnn-model", "version": 1, "x": Payload()}, legacy)  # a zip, as torch writes
    marker.unlink(missing_ok=True)  # torch.save pickled the object; nothing ran yet
    with pytest.raises(ModelFileError, match="neither an sqsnn model file"):
        load_model_file(legacy)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d, t: d.update(kind="resnet"), "unknown model kind"),
        (lambda d, t: d["config"].update(sizes=[6]), "sizes"),
        (lambda d, t: d["config"].update(colour="red"), "colour"),
        (lambda d, t: d.update(version=7), "version 7"),
        (lambda d, t: t.pop("layers.0.theta_in"), r"missing \['layers.0.theta_in'\]"),
        (lambda d, t: t.update(extra=torch.zeros(2, dtype=torch.float64)), r"unexpected \['extra'\]"),
        (lambda d, t: t.update({"layers.0.weight": torch.zeros(4, 7, dtype=torch.float64)}), r"shape \[4, 7\]"),
        (lambda d, t: t.update({"layers.0.weight": torch.zeros(4, 6, dtype=torch.float32)}), "dtype F32"),
        (lambda d, t: t.update({"layers.0.bias": torch.full((4,), float("nan"), dtype=torch.float64)}), "NaN"),
    ],
)
def test_invalid_files_are_refused_naming_the_problem(change, match) -> None:  # type: ignore[no-untyped-def]
    net = _net()
    _, description = read_header(model_bytes(net))
    tensors = {k: v.clone() for k, v in net.state_dict().items()}
    change(description, tensors)
    with pytest.raises(ModelFileError, match=match):
        model_from_bytes(_with(description, tensors))


def test_a_huge_configuration_is_checked_without_allocating_it() -> None:
    """sizes [10^6, 10^6, 10] would need 8 TB of weights; the shapes are compared on the meta device first."""
    _, description = read_header(model_bytes(_net()))
    description["config"]["sizes"] = [10**6, 10**6, 10]
    with pytest.raises(ModelFileError, match=r"shape \[4, 6\]; the configuration needs \[1000000, 1000000\]"):
        model_from_bytes(_with(description, dict(_net().state_dict())))


def test_truncated_and_foreign_files_are_refused() -> None:
    data = model_bytes(_net())
    with pytest.raises(ModelFileError, match="header length"):
        model_from_bytes(data[:40])
    with pytest.raises(ModelFileError, match="safetensors could not read"):
        model_from_bytes(data[:-8])
    foreign = dump_tensors({"w": torch.zeros(2)})
    with pytest.raises(ModelFileError, match="not an sqsnn file"):
        model_from_bytes(foreign)


def _checkpoint() -> Checkpoint:
    """The checkpoint after epoch 1 of a real (tiny) training run, with Adam's state and a best model."""
    data = load_dataset("digits", classes=[0, 1], limit_train=40, limit_test=20)
    saved: list[Checkpoint] = []
    net = SQSNetwork(NetworkConfig(sizes=[64, 4, 2], bias=True, seed=1))
    train(net, data, TrainConfig(epochs=1, batch_size=8, seed=2), on_epoch=lambda m, c: saved.append(c))
    return saved[0]


def _same(a: object, b: object) -> bool:
    """Deep equality with tensors compared exactly, dict key types and tuples preserved."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_checkpoints_round_trip_exactly_without_pickle(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    assert ckpt.optimizer_state["state"] and isinstance(ckpt.optimizer_state["param_groups"][0]["betas"], tuple)
    path = tmp_path / "c.pt"
    save_checkpoint(ckpt, path)
    assert path.read_bytes()[:2] != b"PK"  # not a torch zip / pickle
    back = load_checkpoint(path)
    assert back.epoch == ckpt.epoch and back.metrics == ckpt.metrics
    for name in ("model_state", "optimizer_state", "generator_state", "best_model_state"):
        assert _same(getattr(ckpt, name), getattr(back, name)), name


def test_old_pickled_checkpoints_load_and_foreign_pickles_do_not_run(tmp_path: Path) -> None:
    ckpt = _checkpoint()
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    assert _same(load_checkpoint(old).model_state, ckpt.model_state)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    evil = tmp_path / "evil.pt"
    torch.save(Payload(), evil)
    with pytest.raises(ModelFileError, match="not a readable checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
