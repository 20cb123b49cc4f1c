"""Checkpoints of training, so that any run resumes mid-training with the numbers of an uninterrupted run.

A procedure is a deterministic program whose expensive steps are calls of :func:`~prunelab.training.train`.
Each call is one *stage* (numbered in call order) of a :class:`Checkpoints` directory:

- while a stage trains, the loop writes a **partial** checkpoint every ``every_epochs`` epochs and every
  ``every_seconds`` seconds: the model, every optimizer, the loop's counters and running sums, the history so
  far, the global RNG state, the current mask and the state of every stateful callback (anything with
  ``state_dict``/``load_state_dict``: mask schedules, temperature schedules, GST's event log ...). The data
  order needs nothing: epoch ``e``'s order and augmentation come from a generator seeded with (seed, e).
- when a stage ends, a **final** record replaces it: the same state as it is after training (the internal
  optimizer left out, it dies with the call), the training history and the ``checkpoint_at`` snapshots.

A procedure started again replays its own code; a finished stage returns its stored result and puts every
object it touched back as training left it, and the stage that was interrupted continues from its partial
checkpoint. Files are safetensors (tensors) plus JSON (everything else, with the sha256 of the tensor file);
the JSON is written last and atomically, so a damaged or half-written checkpoint fails its check and is
ignored (the stage restarts), never used.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import torch

from ..io import atomic_write_json, load_tensors, save_tensors, sha256_file

PARTIAL, FINAL = "partial", "final"


# nested state <-> (JSON, flat tensors) -------------------------------------------------------------------
def pack(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """``obj`` as JSON data, its tensors moved into ``tensors`` under generated keys (tuples, non-string
    dict keys and torch generators survive the round trip through :func:`unpack`)."""
    if torch.is_tensor(obj):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, torch.Generator):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj.get_state()
        return {"__generator__": key, "device": str(obj.device)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: pack(v, tensors, prefix) for k, v in obj.items()}}
        return {"__items__": [[pack(k, tensors, prefix), pack(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [pack(v, tensors, prefix) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}; state_dict() must hold tensors, generators, "
                    f"numbers, strings, lists, tuples and dicts")


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__generator__" in obj:
        g = torch.Generator(device=obj["device"])
        g.set_state(tensors[obj["__generator__"]])
        return g
    if "__dict__" in obj:
        return {k: unpack(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(unpack(v, tensors) for v in obj["__tuple__"])
    raise ValueError(f"unknown packed object with keys {sorted(obj)}")


def rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def stateful(objs) -> list:
    """The objects of ``objs`` that carry state across steps (they define ``state_dict``)."""
    return [o for o in objs if callable(getattr(o, "state_dict", None))]


# one stage ---------------------------------------------------------------------------------------------
class Stage:
    """The checkpoint files of one training call: ``partial`` while it runs, ``final`` once it ended."""

    def __init__(self, directory: Path, index: int, owner: "Checkpoints"):
        self.dir = directory
        self.index = index
        self.owner = owner
        self._last_save = time.monotonic()

    def _write(self, kind: str, state: dict) -> None:
        tensors: dict[str, torch.Tensor] = {}
        meta = pack(state, tensors)
        self.dir.mkdir(parents=True, exist_ok=True)
        old = self._read_manifest(kind)
        # a fresh file name per write: the manifest names the file it checked, so a crash between writing
        # the tensors and the manifest leaves the previous checkpoint intact
        name = f"{kind}-{time.time_ns()}.safetensors"
        save_tensors(self.dir / name, tensors)
        atomic_write_json(self.dir / f"{kind}.json", {"stage": self.index, "kind": kind, "tensors": name,
                                                      "sha256": sha256_file(self.dir / name), "state": meta})
        if old is not None and old.get("tensors") != name:
            (self.dir / old["tensors"]).unlink(missing_ok=True)
        self._last_save = time.monotonic()

    def _read_manifest(self, kind: str) -> Optional[dict]:
        try:
            return json.loads((self.dir / f"{kind}.json").read_text())
        except (OSError, ValueError):
            return None

    def _read(self, kind: str) -> Optional[dict]:
        manifest = self._read_manifest(kind)
        if manifest is None:
            return None
        path = self.dir / str(manifest.get("tensors", ""))
        try:
            if sha256_file(path) != manifest["sha256"]:
                return None
            tensors, _ = load_tensors(path)
            return unpack(manifest["state"], tensors)
        except (OSError, KeyError, ValueError, RuntimeError):
            return None

    def save_partial(self, state: dict) -> None:
        self._write(PARTIAL, state)

    def save_final(self, state: dict) -> None:
        self._write(FINAL, state)
        manifest = self._read_manifest(PARTIAL)
        (self.dir / f"{PARTIAL}.json").unlink(missing_ok=True)
        if manifest is not None:
            (self.dir / manifest["tensors"]).unlink(missing_ok=True)

    def load_partial(self) -> Optional[dict]:
        return self._read(PARTIAL)

    def load_final(self) -> Optional[dict]:
        return self._read(FINAL)

    def due(self, it: int, per_epoch: int) -> bool:
        """Whether a partial checkpoint is due after iteration ``it``."""
        o = self.owner
        if o.every_iterations and it % o.every_iterations == 0:
            return True
        if o.every_epochs and it % (o.every_epochs * per_epoch) == 0:
            return True
        return o.every_seconds is not None and time.monotonic() - self._last_save >= o.every_seconds


class Checkpoints:
    """Stage checkpoints of one run in ``directory`` (``stage_<i>/``), handed out in call order.

    ``every_epochs`` / ``every_seconds`` / ``every_iterations`` set how often a partial checkpoint is
    written while a stage trains (any that is due triggers one; None or 0 turns that trigger off)."""

    def __init__(self, directory: str | Path, *, every_epochs: Optional[float] = 1,
                 every_seconds: Optional[float] = 300.0, every_iterations: Optional[int] = None):
        self.dir = Path(directory)
        self.every_epochs = every_epochs
        self.every_seconds = every_seconds
        self.every_iterations = every_iterations
        self._next = 0
        self.resumed: list[tuple[int, str, int]] = []   # (stage, "final" | "partial", iteration) restored

    def next_stage(self) -> Stage:
        stage = Stage(self.dir / f"stage_{self._next:04d}", self._next, self)
        self._next += 1
        return stage

    def clear(self) -> None:
        """Remove every checkpoint (a finished run keeps its results in the store, not here)."""
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)
