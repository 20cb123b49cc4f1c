"""The procedure contract: every method is one registered, typed config with a ``run(ctx)``.

A procedure kind is a pydantic model (its fields are the spec's ``procedure:`` section) registered with
``@register_procedure("kind")``. ``run(ctx)`` gets a :class:`RunContext` — model factory, data, training
configs, seed, where to checkpoint — trains through ``ctx.train`` (every call is a resumable stage of the
run's :class:`~prunelab.training.checkpoint.Checkpoints`) and reports rows through ``ctx.row``, the one row
builder. The experiment layer knows no procedure by name: it looks the kind up here and calls ``run``.

Every row has a ``variant`` (what was trained: ``ticket``, ``reinit``, ``gmp``, ``search`` ...) and a
``round``, the *stage index*, whose meaning each kind states in its ``stage_index`` (IMP round, index into
the sparsities, CS search round, DSD phase, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

from pydantic import BaseModel, ConfigDict
from torch import nn

from ..errors import unknown_name
from ..primitives.masks import Mask
from ..training import TrainConfig, TrainResult, evaluate_splits, train
from ..training.checkpoint import Checkpoints

ModelFn = Callable[[int], nn.Module]


@dataclass
class ResultRow:
    """One trained (or evaluated) network of a procedure: its mask, last and early-stop evaluations."""

    variant: str
    round: int            # the stage index; see the kind's ``stage_index``
    kept: int
    total: int
    final: dict           # last evaluation row
    early_stop: dict      # row of minimum validation loss (empty without a validation split)
    mask: Mask
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # procedure-specific numbers (stability, flatness, ...)

    @property
    def density(self) -> float:
        # An empty mask (e.g. GST's unpruned configs) prunes nothing: the network is fully dense.
        return self.kept / self.total if self.total else 1.0

    def row(self) -> dict:
        out = {"variant": self.variant, "round": self.round, "kept": self.kept, "total": self.total,
               "remaining_pct": 100.0 * self.density}
        for k in ("test_acc", "test_loss", "val_acc", "val_loss"):
            if k in self.final:
                out[k] = self.final[k]
        if self.early_stop:
            out["early_stop_iteration"] = self.early_stop["iteration"]
            if "test_acc" in self.early_stop:
                out["early_stop_test_acc"] = self.early_stop["test_acc"]
        out.update(self.extra)
        return out


@dataclass
class ProcedureResult:
    """What any procedure returns: its rows in order, the last trained network, and named model states
    worth keeping (``states["final"]``: weights and buffers the run ended with, stored as an artifact)."""

    rows: list[ResultRow] = field(default_factory=list)
    model: Optional[nn.Module] = None
    states: dict[str, dict] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)    # diagnostics that are not rows (schedules, logs)

    def table(self):
        import pandas as pd
        return pd.DataFrame([r.row() for r in self.rows])

    def masks(self, variant: str = "ticket") -> list[Mask]:
        return [r.mask for r in self.rows if r.variant == variant]


@dataclass
class RunContext:
    """Everything a procedure's ``run`` may use; ``train`` and ``row`` are the only ways it trains and
    reports, so resuming, progress and storing rows happen in one place."""

    model_fn: ModelFn
    data: Any
    train_cfg: TrainConfig
    seed: int = 0
    finetune: Optional[TrainConfig] = None
    keep_history: bool = False
    on_row: Optional[Callable[[ResultRow], None]] = None
    checkpoints: Optional[Checkpoints] = None
    result: ProcedureResult = field(default_factory=ProcedureResult)

    def train(self, model: nn.Module, cfg: Optional[TrainConfig] = None, *, data=None, **kw) -> TrainResult:
        """:func:`~prunelab.training.train` as the run's next resumable stage, on the run's data unless
        ``data`` is given (a sanity check's altered copy)."""
        stage = self.checkpoints.next_stage() if self.checkpoints is not None else None
        return train(model, self.data if data is None else data, cfg or self.train_cfg, stage=stage, **kw)

    def evaluate(self, model: nn.Module, cfg: Optional[TrainConfig] = None, **kw) -> dict:
        """The cfg's evaluation splits in one row (precision and layout as given in ``kw``)."""
        cfg = cfg or self.train_cfg
        return evaluate_splits(model, self.data, cfg.eval_splits, batch_size=cfg.eval_batch_size, **kw)

    def row(self, variant: str, rnd: int, mask: Mask, res: Optional[TrainResult] = None, *,
            final: Optional[dict] = None, extra: Optional[dict] = None,
            counts: Optional[tuple[int, int]] = None) -> ResultRow:
        """Build the row of one network, keep and report it: its last evaluation and early-stop point are
        training's (``res``) unless ``final`` gives an evaluation made after training (then there is no
        early-stop point; ``res`` still supplies the history). ``counts`` = (kept, total) when the row
        counts something other than the mask's entries."""
        mask = mask.clone().to("cpu")
        kept, total = counts if counts is not None else (mask.kept(), mask.total())
        if final is None:
            final, early = res.final, res.early_stop("val")
        else:
            early = {}
        history = res.history if (res is not None and self.keep_history) else []
        r = ResultRow(variant, rnd, kept, total, final, early, mask, history, dict(extra or {}))
        self.result.rows.append(r)
        if self.on_row is not None:
            self.on_row(r)
        return r


class Procedure(BaseModel):
    """Base of every procedure kind: frozen, unknown keys rejected, a ``kind`` literal per subclass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_index: ClassVar[str] = "round"   # what a row's ``round`` counts for this kind

    def trainings(self) -> int:
        """Number of training runs (for progress bars)."""
        return 1

    def needs_finetune(self) -> bool:
        """Whether the experiment must give a ``finetune`` training config."""
        return False

    def run(self, ctx: RunContext) -> ProcedureResult:
        raise NotImplementedError(f"{type(self).__name__} does not implement run(ctx)")


PROCEDURES: dict[str, type[Procedure]] = {}


def register_procedure(kind: str):
    """Class decorator: make a :class:`Procedure` subclass the spec section of ``kind: <kind>``."""
    def deco(cls: type[Procedure]) -> type[Procedure]:
        declared = cls.model_fields.get("kind")
        if declared is None or declared.default != kind:
            raise TypeError(f"{cls.__name__} must declare kind: Literal[{kind!r}] = {kind!r}")
        if kind in PROCEDURES and PROCEDURES[kind] is not cls:
            raise ValueError(f"procedure kind {kind!r} is already registered by {PROCEDURES[kind].__name__}")
        PROCEDURES[kind] = cls
        return cls
    return deco


def list_procedures() -> list[str]:
    return sorted(PROCEDURES)


def get_procedure(kind: str) -> type[Procedure]:
    if kind not in PROCEDURES:
        raise unknown_name("procedure kind", kind, PROCEDURES)
    return PROCEDURES[kind]


def run_procedure(model_fn: ModelFn, data, train_cfg: TrainConfig, cfg: Procedure, *, seed: int = 0,
                  finetune: Optional[TrainConfig] = None, keep_history: bool = False,
                  on_row: Optional[Callable[[ResultRow], None]] = None,
                  checkpoints: Optional[Checkpoints | str | Path] = None) -> ProcedureResult:
    """Run any procedure config: ``model_fn(seed)`` builds a freshly initialised network, ``train_cfg`` is
    its training (``finetune`` the fine-tuning where the procedure has one). ``checkpoints`` (a directory or :class:`Checkpoints`) makes the run
    resumable: started again with the same arguments it continues where it stopped, mid-training included,
    and returns exactly what an uninterrupted run returns."""
    if cfg.needs_finetune() and finetune is None:
        from ..errors import ConfigError
        raise ConfigError(f"procedure {cfg.kind!r} with these settings needs a finetune TrainConfig")
    if checkpoints is not None and not isinstance(checkpoints, Checkpoints):
        checkpoints = Checkpoints(checkpoints)
    ctx = RunContext(model_fn, data, train_cfg, seed=seed, finetune=finetune, keep_history=keep_history,
                     on_row=on_row, checkpoints=checkpoints)
    return cfg.run(ctx)
