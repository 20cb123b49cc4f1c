"""Round-level checkpoints so a killed procedure resumes where it stopped, with identical results.

A :class:`RoundStore` keeps, per finished round, the results emitted in that round, their masks and the
state the next round starts from. Files are written atomically and a round counts as finished only once
its manifest (with the sha256 of every file) is in place; a truncated or corrupted file fails its checksum
and that round is recomputed, never silently used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import torch

from ..io import atomic_write_json, load_tensors, save_tensors
from ..primitives.masks import Mask

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class RoundStore:
    """Round checkpoints of one run in a directory: ``round_<r>/{results.json, masks, state}``."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _round_dir(self, rnd: int) -> Path:
        return self.dir / f"round_{rnd:03d}"

    def save(self, rnd: int, results: list[dict], masks: dict[str, Mask],
             states: dict[str, dict[str, torch.Tensor]]) -> None:
        """Persist round ``rnd``: result rows, masks keyed by variant, named state dicts."""
        d = self._round_dir(rnd)
        d.mkdir(parents=True, exist_ok=True)
        (d / MANIFEST).unlink(missing_ok=True)  # the round is unfinished until the new manifest lands
        files = {}
        for variant, m in masks.items():
            m.save(d / f"mask_{variant}.safetensors")
            files[f"mask_{variant}.safetensors"] = None
        for name, state in states.items():
            save_tensors(d / f"state_{name}.safetensors", state)
            files[f"state_{name}.safetensors"] = None
        atomic_write_json(d / "results.json", results)
        files["results.json"] = None
        manifest = {"round": rnd, "files": {f: _sha256(d / f) for f in files}}
        atomic_write_json(d / MANIFEST, manifest)
        if rnd > 1:  # keep two: if the newest round turns out damaged, the one before still resumes
            self._drop_superseded_model(rnd - 2)

    def _drop_superseded_model(self, rnd: int) -> None:
        """Only the newest round's model state is ever resumed from; older ones would fill the disk.
        The manifest is rewritten first, so a crash in between leaves a stray file, never a bad round."""
        d = self._round_dir(rnd)
        path = d / "state_model.safetensors"
        try:
            manifest = json.loads((d / MANIFEST).read_text())
        except (OSError, ValueError):
            return
        if path.name in manifest["files"]:
            del manifest["files"][path.name]
            atomic_write_json(d / MANIFEST, manifest)
        path.unlink(missing_ok=True)

    def _valid(self, rnd: int) -> bool:
        d = self._round_dir(rnd)
        try:
            manifest = json.loads((d / MANIFEST).read_text())
            return all(_sha256(d / f) == digest for f, digest in manifest["files"].items())
        except (OSError, ValueError, KeyError):
            return False

    def finished_rounds(self) -> list[int]:
        """Rounds 0..r that are all present and intact (a damaged round ends the usable prefix)."""
        out = []
        rnd = 0
        while self._round_dir(rnd).is_dir() and self._valid(rnd):
            out.append(rnd)
            rnd += 1
        return out

    def load(self, rnd: int, device: str | torch.device = "cpu"
             ) -> tuple[list[dict], dict[str, Mask], dict[str, dict[str, torch.Tensor]]]:
        d = self._round_dir(rnd)
        results = json.loads((d / "results.json").read_text())
        masks = {p.stem[len("mask_"):]: Mask.load(p, device) for p in sorted(d.glob("mask_*.safetensors"))}
        states = {p.stem[len("state_"):]: load_tensors(p, device)[0] for p in sorted(d.glob("state_*.safetensors"))}
        return results, masks, states

    def _has_model(self, rnd: int) -> bool:
        manifest = json.loads((self._round_dir(rnd) / MANIFEST).read_text())
        return "state_model.safetensors" in manifest["files"]

    def latest(self) -> Optional[int]:
        """The newest intact round that can be resumed from (its model state is kept), or None."""
        resumable = [r for r in self.finished_rounds() if self._has_model(r)]
        return resumable[-1] if resumable else None
