"""Experiment specs: one procedure on one model, dataset and seed, typed, validated and hashed.

A spec is a YAML file or the same thing as Python objects. Unknown keys are rejected with a did-you-mean
hint and bad values with their allowed range (:func:`validate_spec`). The run id is the sha256 of the
canonical JSON of the spec with every default left out, so writing a default explicitly, or listing keys
in another order, names the same run. Fields that only say *where* or *how fast* a run computes (the data
root, CPU threads, progress bars) are not part of the run id.
"""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..procedures import PROCEDURES
from ..training import TrainConfig

RUN_ID_CHARS = 16

# (path in the spec) -> left out of the run id: they change where or how fast a run computes, not what.
EXECUTION_ONLY = (("dataset", "root"), ("threads",), ("train", "progress"), ("finetune", "progress"),
                  ("checkpoint",))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _jsonable(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)


class ModelSpec(_Strict):
    """A registered model (``prunelab list models``) and keyword options of its factory."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _known_model(cls, data):
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return data
        from ..errors import unknown_name
        from ..models import list_models, model_options
        from ..models.registry import _accepts_any_option
        name = data["name"]
        if name not in list_models():
            raise ValueError(str(unknown_name("model", name, list_models())))
        options = dict(data.get("options") or {})
        defaults = model_options(name)
        extra = sorted(set(options) - set(defaults))
        if extra and not _accepts_any_option(name):
            import difflib
            hints = [f"{k!r} (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, defaults, n=1))
                     else repr(k) for k in extra]
            raise ValueError(f"model {name!r} has no option {', '.join(hints)}; "
                             f"allowed: {', '.join(defaults) or '(none)'}")
        # an option set to the factory's own default builds the same model: keep it out of the run id
        options = {k: v for k, v in options.items()
                   if not (k in defaults and _jsonable(defaults[k]) == _jsonable(v))}
        return {**data, "options": options}


class AugmentSpec(_Strict):
    crop_padding: int = Field(0, ge=0)
    flip: bool = False


class DatasetSpec(_Strict):
    """Arguments of :func:`prunelab.data.load_dataset`; ``root`` None means $PRUNELAB_DATA or
    ~/.cache/prunelab/data (the root is not part of the run id: it says where the files are)."""

    name: str
    root: Optional[str] = None
    val_size: int = Field(0, ge=0)
    val_seed: int = Field(0, ge=0)
    balanced_val: bool = False
    train_size: Optional[int] = Field(None, ge=1)
    train_seed: Optional[int] = Field(None, ge=0)
    balanced_train: bool = True
    test_size: Optional[int] = Field(None, ge=1)   # a class-balanced test subset; None: the full test set
    test_seed: int = Field(0, ge=0)
    normalize: Union[Literal["standard", "divide255"], tuple[tuple[float, ...], tuple[float, ...]]] = "standard"
    augment: Union[bool, AugmentSpec, None] = None

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, v):
        from ..data import list_datasets
        from ..errors import unknown_name
        if v not in list_datasets():
            raise ValueError(str(unknown_name("dataset", v, list_datasets())))
        return v

    def load_kwargs(self) -> dict:
        kw = self.model_dump(exclude={"name", "root"})
        if isinstance(self.augment, AugmentSpec):
            kw["augment"] = self.augment.model_dump()
        return kw


# Every registered procedure kind (prunelab.procedures.base.register_procedure) is a spec section.
ProcedureSpec = Annotated[Union[tuple(PROCEDURES.values())], Field(discriminator="kind")]
PROCEDURE_KINDS = tuple(PROCEDURES)


class CheckpointSpec(_Strict):
    """How often a training run writes a resumable checkpoint (any trigger that is due writes one)."""

    every_epochs: Optional[float] = Field(1, gt=0)
    every_seconds: Optional[float] = Field(300.0, gt=0)
    every_iterations: Optional[int] = Field(None, ge=1)


class ExperimentSpec(_Strict):
    """One run: a procedure on a model and dataset with one seed."""

    name: str = Field(..., min_length=1)
    model: ModelSpec
    dataset: DatasetSpec
    train: TrainConfig
    procedure: ProcedureSpec
    finetune: Optional[TrainConfig] = None  # the training of rewind="finetune" rounds
    seed: int = Field(0, ge=0)
    threads: Optional[int] = Field(None, ge=1)  # torch CPU threads; default: set by the executor
    checkpoint: CheckpointSpec = CheckpointSpec()   # not part of the run id: it says how, not what

    @model_validator(mode="after")
    def _finetune_given(self):
        if self.procedure.needs_finetune() and self.finetune is None:
            raise ValueError(f"procedure {self.procedure.kind!r} with rewind='finetune' needs a finetune training "
                             f"config (finetune: {{optimizer: ..., lr: ..., epochs: ...}})")
        return self

    def canonical(self) -> dict:
        """The spec as hashed: defaults and execution-only fields left out."""
        d = self.to_dict()   # the kind stays: it tells procedures apart even when all else is default
        for path in EXECUTION_ONLY:
            node = d
            for key in path[:-1]:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(path[-1], None)
        return d

    def run_id(self) -> str:
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:RUN_ID_CHARS]

    def to_dict(self) -> dict:
        """The spec without defaults (what a YAML file for it needs to say)."""
        d = self.model_dump(mode="json", exclude_defaults=True)
        d["procedure"] = {"kind": self.procedure.kind, **d.get("procedure", {})}
        return d

    def to_yaml(self) -> str:
        import yaml
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def trainings(self) -> int:
        """Number of training runs the procedure does (for progress bars)."""
        return self.procedure.trainings()
