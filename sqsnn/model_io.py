"""Model and checkpoint files without pickle: safetensors tensors plus a JSON description in the header.

A model file is one safetensors file. Its tensors are the model's ``state_dict`` (float64, each under its
``state_dict`` key). Its header metadata holds one entry, ``sqsnn``: a JSON object

    {"format": "sqsnn-model", "version": 2, "kind": "sqsnn" | "lif" | "qlif",
     "config": {...the model's configuration dataclass...}, "metadata": {...free JSON...}}

Reading never executes code from the file: the header is parsed as JSON, the configuration is checked by the
model's configuration dataclass, the expected tensor names, shapes and dtypes are derived from a model built on
the ``meta`` device (no memory allocated) and compared with the file's before any weight is read, and the
weights are read by safetensors. Files written before this format (torch pickles, format version 1) are read
with ``torch.load(weights_only=True)``, torch's restricted unpickler that builds only tensors and plain
containers.

A training checkpoint (:class:`sqsnn.training.results.Checkpoint`: weights, optimizer state, generator state,
metrics) is stored the same way: its tensors in safetensors, its structure in the ``sqsnn`` entry as JSON
in which a tensor is ``{"__tensor__": name}``, a tuple ``{"__tuple__": [...]}`` and a dict (whose keys may
be ints, as in an optimizer's state) ``{"__dict__": [[key, value], ...]}``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors
from torch import nn

from sqsnn.network import model_class

MODEL_FORMAT = "sqsnn-model"
MODEL_VERSION = 2
CHECKPOINT_FORMAT = "sqsnn-checkpoint"
CHECKPOINT_VERSION = 1
METADATA_KEY = "sqsnn"
MAX_HEADER_BYTES = 1 << 20  # the JSON header: names, shapes and offsets of a few dozen tensors plus the config
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32}


class ModelFileError(ValueError):
    """A model file that cannot be read: the message says what is wrong with it."""


def model_bytes(model: nn.Module, **metadata: Any) -> bytes:
    """The model file of ``model`` (it provides ``kind`` and ``describe()``); ``metadata`` must be JSON."""
    description = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "kind": model.kind,
        "config": model.describe(),  # type: ignore[operator]
        "metadata": metadata,
    }
    # the file stores floating tensors in float64: a model trained in float32 is widened exactly
    tensors = {
        name: (t.double() if t.is_floating_point() else t).detach().contiguous()
        for name, t in model.state_dict().items()
    }
    return dump_tensors(tensors, metadata={METADATA_KEY: json.dumps(description)})


def save_model_file(model: nn.Module, path: str | Path, **metadata: Any) -> None:
    """Write :func:`model_bytes` to ``path``."""
    Path(path).write_bytes(model_bytes(model, **metadata))


def _description(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensor entries, parsed 'sqsnn' metadata entry)`` of a safetensors file made here."""
    if len(data) < 8:
        raise ModelFileError("not a safetensors file: shorter than its 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise ModelFileError(f"not a safetensors file: header length {n} (at most {MAX_HEADER_BYTES}, within the file)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"not a safetensors file: its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError("not a safetensors file: its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        raise ModelFileError(f"a safetensors file without the '{METADATA_KEY}' metadata entry: not an sqsnn file")
    try:
        description = json.loads(meta[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"metadata entry '{METADATA_KEY}' is not JSON ({exc})") from None
    if not isinstance(description, dict):
        raise ModelFileError(f"metadata entry '{METADATA_KEY}' is not a JSON object")
    return header, description


def read_header(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensor entries, description)`` of a safetensors model file's bytes: each entry is
    ``{"dtype", "shape", "data_offsets"}``; the description is the parsed ``sqsnn`` metadata entry."""
    header, description = _description(data)
    if description.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"metadata entry '{METADATA_KEY}' does not describe an '{MODEL_FORMAT}' file")
    if description.get("version") != MODEL_VERSION:
        raise ModelFileError(f"model format version {description.get('version')!r}; this sqsnn reads {MODEL_VERSION}")
    for key, typ in (("kind", str), ("config", dict), ("metadata", dict)):
        if not isinstance(description.get(key), typ):
            raise ModelFileError(f"'{METADATA_KEY}.{key}' must be a JSON {typ.__name__}")
    return header, description


def _skeleton(kind: str, config: dict[str, Any]) -> nn.Module:
    """The model of ``kind`` for ``config`` on the meta device (shapes only, nothing allocated)."""
    try:
        cls = model_class(kind)
    except ValueError as exc:
        raise ModelFileError(f"'{METADATA_KEY}.kind': {exc}") from None
    try:
        with torch.device("meta"):
            return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"'{METADATA_KEY}.config' is not a valid {kind} configuration: {exc}") from None


def _check_tensors(header: dict[str, Any], skeleton: nn.Module) -> None:
    """The file's tensors are exactly the model's: same names, shapes and dtypes."""
    expected = skeleton.state_dict()
    missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or extra:
        raise ModelFileError(f"tensors do not match the configuration: missing {missing}, unexpected {extra}")
    for name, ref in expected.items():
        entry = header[name]
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if shape != list(ref.shape):
            raise ModelFileError(f"tensor {name!r} has shape {shape}; the configuration needs {list(ref.shape)}")
        if SAFETENSORS_DTYPES.get(entry.get("dtype")) != ref.dtype:
            raise ModelFileError(f"tensor {name!r} has dtype {entry.get('dtype')}; the model stores {ref.dtype}")


def model_from_bytes(data: bytes) -> tuple[nn.Module, dict[str, Any]]:
    """Validate and load a model file's bytes; returns ``(model, metadata)``. Raises :class:`ModelFileError`
    naming what is wrong. Every weight must be finite."""
    header, description = read_header(data)
    skeleton = _skeleton(description["kind"], description["config"])
    _check_tensors(header, skeleton)
    try:
        tensors = load_tensors(data)
    except SafetensorError as exc:  # inconsistent offsets, truncated data
        raise ModelFileError(f"safetensors could not read the tensors: {exc}") from None
    bad = [name for name, t in tensors.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelFileError(f"tensors {bad} hold NaN or infinite values")
    model: nn.Module = model_class(description["kind"]).from_config(description["config"])
    model.load_state_dict(tensors)
    return model, dict(description["metadata"])


def _legacy(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A version-1 (torch pickle) checkpoint, read by torch's restricted unpickler."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or others for foreign files
        raise ModelFileError(f"{path} is neither an sqsnn model file nor a readable version-1 checkpoint") from exc
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or payload.get("version") != 1:
        raise ModelFileError(f"{path} is not an sqsnn model checkpoint")
    model: nn.Module = model_class(payload["kind"]).from_config(payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model, dict(payload.get("metadata", {}))


def load_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a model file written by :func:`save_model_file` (or a version-1 checkpoint); returns
    ``(model, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    data = path.read_bytes()
    if data[:2] == b"PK":  # torch.save writes a zip archive
        return _legacy(path)
    try:
        return model_from_bytes(data)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON, its tensors moved to ``tensors`` (see the module docstring)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().clone().contiguous()  # a copy: safetensors refuses shared storage
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if not all(isinstance(k, str | int) for k in obj):
            raise TypeError(f"checkpoint dict keys must be str or int; got {sorted(map(repr, obj))[:3]}")
        return {"__dict__": [[k, _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_flatten`."""
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"} and obj["__tensor__"] in tensors:
        return tensors[obj["__tensor__"]]
    if set(obj) == {"__tuple__"} and isinstance(obj["__tuple__"], list):
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if set(obj) == {"__dict__"} and isinstance(obj["__dict__"], list):
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    raise ModelFileError(f"checkpoint structure holds an unknown node with keys {sorted(obj)}")


def save_checkpoint(checkpoint: Any, path: str | Path) -> None:
    """Write a training :class:`~sqsnn.training.results.Checkpoint` to ``path`` (safetensors + JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    fields = {f.name: getattr(checkpoint, f.name) for f in dataclasses.fields(checkpoint) if f.name != "metrics"}
    description = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "metrics": [dataclasses.asdict(m) for m in checkpoint.metrics],
        "fields": _flatten(fields, tensors),
    }
    Path(path).write_bytes(dump_tensors(tensors, metadata={METADATA_KEY: json.dumps(description)}))


def load_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint written by :func:`save_checkpoint` (or, from before it, by ``torch.save``: read by
    the restricted unpickler, which may build only ``Checkpoint`` and ``EpochMetrics`` besides tensors)."""
    from sqsnn.training.results import Checkpoint, EpochMetrics

    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"PK":
        with torch.serialization.safe_globals([Checkpoint, EpochMetrics]):
            try:
                legacy = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError and others for anything else
                raise ModelFileError(f"{path} is not a readable checkpoint: {exc}") from None
        if not isinstance(legacy, Checkpoint):
            raise ModelFileError(f"{path} holds a {type(legacy).__name__}, not a Checkpoint")
        return legacy
    try:
        _, description = _description(data)
        if description.get("format") != CHECKPOINT_FORMAT or description.get("version") != CHECKPOINT_VERSION:
            raise ModelFileError(f"not an '{CHECKPOINT_FORMAT}' version {CHECKPOINT_VERSION} file")
        fields = _unflatten(description["fields"], load_tensors(data))
        metrics = [EpochMetrics(**m) for m in description["metrics"]]
        return Checkpoint(**fields, metrics=metrics)
    except (ModelFileError, SafetensorError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: {exc}") from None
