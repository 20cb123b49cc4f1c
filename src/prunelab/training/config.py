"""Training hyperparameters, validated: a bad value is rejected with its name, value and allowed range."""
from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = Field(128, ge=1)
    # exactly one budget: epochs (may be fractional) or iterations
    epochs: Optional[float] = Field(None, gt=0)
    iterations: Optional[int] = Field(None, ge=1)
    schedule: Literal["constant", "multistep", "cosine"] = "constant"
    milestones: tuple[float, ...] = ()  # in the unit of the budget (epochs or iterations)
    gamma: float = Field(0.1, gt=0)
    warmup_iterations: int = Field(0, ge=0)
    eval_every: Optional[int] = Field(None, ge=1)  # iterations; default once per epoch
    eval_splits: tuple[Literal["train", "val", "test"], ...] = ("val", "test")
    eval_batch_size: int = Field(1000, ge=1)
    augment: Optional[bool] = None  # None: the dataset's default
    drop_last: bool = False
    device: str = "cpu"
    channels_last: Optional[bool] = None  # None: on for models with 2-D convolutions
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    mask_grads: bool = False
    nan_check_every: int = Field(50, ge=1)
    progress: bool = False

    @model_validator(mode="after")
    def _one_budget(self):
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError(f"give exactly one budget: epochs={self.epochs!r}, iterations={self.iterations!r}")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones (in epochs or iterations, as the budget)")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {list(self.milestones)}")
        return self

    def iterations_per_epoch(self, n_train: int) -> int:
        return n_train // self.batch_size if self.drop_last else math.ceil(n_train / self.batch_size)

    def total_iterations(self, n_train: int) -> int:
        if self.iterations is not None:
            return self.iterations
        return max(1, round(self.epochs * self.iterations_per_epoch(n_train)))

    def milestone_iterations(self, n_train: int) -> list[int]:
        if self.iterations is not None:
            return [int(m) for m in self.milestones]
        per = self.iterations_per_epoch(n_train)
        return [round(m * per) for m in self.milestones]

    def lr_factor(self, iteration: int, n_train: int) -> float:
        """Multiplier of ``lr`` at ``iteration`` (0-based): warm-up, then the schedule."""
        total = self.total_iterations(n_train)
        f = 1.0
        if self.schedule == "multistep":
            f = self.gamma ** sum(iteration >= m for m in self.milestone_iterations(n_train))
        elif self.schedule == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(iteration, total) / total))
        if self.warmup_iterations and iteration < self.warmup_iterations:
            f *= (iteration + 1) / self.warmup_iterations
        return f
