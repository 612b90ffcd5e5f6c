"""Artifact files (models, checkpoints) under ``<home>/artifacts``, written atomically, checked by sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class ArtifactCorrupted(RuntimeError):
    """A stored file does not match the sha256 recorded in the database."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def finalize(tmp: Path, final: Path) -> tuple[str, int]:
    """fsync ``tmp``, rename it to ``final`` atomically; returns (sha256, size in bytes)."""
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return sha256_file(final), final.stat().st_size


def checkpoint_path(artifacts: Path, job_id: str, epoch: int) -> Path:
    """Where the checkpoint after ``epoch`` of ``job_id`` is stored."""
    folder = artifacts / "checkpoints" / job_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"epoch-{epoch:04d}.pt"


def model_path(artifacts: Path, model_id: str) -> Path:
    """Where model ``model_id`` is stored."""
    folder = artifacts / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{model_id}.pt"


def verified(path: str | Path, sha256: str) -> Path:
    """``path`` after checking its sha256; raises ArtifactCorrupted when missing or different."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactCorrupted(f"artifact {p} is missing")
    actual = sha256_file(p)
    if actual != sha256:
        raise ArtifactCorrupted(f"artifact {p} has sha256 {actual}, expected {sha256}")
    return p
