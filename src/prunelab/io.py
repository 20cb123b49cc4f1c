"""Atomic, pickle-free persistence: tensors in safetensors, metadata in JSON; file digests."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file


def _atomic_target(path: str | os.PathLike) -> tuple[Path, str]:
    """A new, exclusive temp file beside ``path``. Unlike tempfile.mkstemp (mode 0600) it is created with
    0666 minus the umask: results, reports and stores are meant to be read by others (a shared results
    directory, a web server)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path, str(tmp)
        except FileExistsError:  # pragma: no cover - a 48-bit name collision
            continue


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it and os.replace it into place: readers see
    the old file or the new one, never a part. Returns ``path``."""
    path, tmp = _atomic_target(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def save_tensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, Any] | None = None) -> None:
    """Write tensors to a safetensors file atomically; metadata is stored as one JSON string."""
    # safetensors refuses shared or strided storage (e.g. channels_last), so hand it dense CPU copies.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"prunelab": json.dumps(dict(metadata or {}), sort_keys=True)}
    path, tmp = _atomic_target(path)
    try:
        save_file(flat, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_tensors`; never unpickles."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    tensors = load_file(str(path), device=str(device))
    return tensors, json.loads(meta.get("prunelab", "{}"))


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes with any :mod:`hashlib` algorithm (md5 for dataset checksums, ...),
    read in 1 MiB chunks so large files never sit in memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file (hex): how artifacts and checkpoints are verified."""
    return file_digest(path, "sha256")
