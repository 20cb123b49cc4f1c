"""Dense–sparse–dense training (Han et al. 2017, spec §1.7).

1. dense: train the full network;
2. sparse: prune the smallest-magnitude weights (per layer by default) and retrain under the mask;
3. re-dense: lift the mask — the pruned connections re-enter *at zero* — and retrain the full network with
   the learning rate scaled by ``redense_lr_scale`` (≈ 1/10 in the paper).

The sparse phase trains with the ``finetune`` config (default: the main one); the re-dense phase with the
same config and the scaled learning rate.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..primitives.masks import Mask
from ..pruning import prune
from ..seeding import derive_seed
from ..training import TrainConfig, train
from .imp import IMPResult, ModelFn, RoundResult


class DSDConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sparsity: float = Field(0.5, ge=0, lt=1)
    allocation: Literal["layerwise", "global"] = "layerwise"
    scope: Union[str, list[str], None] = None
    ties: Literal["random", "index", "keep"] = "random"
    redense_lr_scale: float = Field(0.1, gt=0)


def run_dsd(model_fn: ModelFn, data, train_cfg: TrainConfig, cfg: DSDConfig, *, seed: int = 0,
            finetune: Optional[TrainConfig] = None, keep_history: bool = False,
            on_round: Optional[Callable[[RoundResult], None]] = None) -> IMPResult:
    """Rows ``dense`` (round 0), ``sparse`` (round 1) and ``redense`` (round 2)."""
    model = model_fn(seed)
    ones = Mask.ones(model, cfg.scope)
    out = IMPResult()

    def emit(variant, rnd, mask, res):
        r = RoundResult(variant, rnd, mask.kept(), mask.total(), res.final, res.early_stop("val"),
                        mask.clone().to("cpu"), res.history if keep_history else [])
        out.rounds.append(r)
        if on_round is not None:
            on_round(r)

    emit("dense", 0, ones, train(model, data, train_cfg, seed=seed, desc="dsd dense"))
    mask = prune(model, sparsity=cfg.sparsity, mask=ones.to(next(model.parameters()).device),
                 allocation=cfg.allocation, ties=cfg.ties, seed=derive_seed(seed, "dsd-prune"), apply=True)
    sparse_cfg = finetune or train_cfg
    emit("sparse", 1, mask, train(model, data, sparse_cfg, mask=mask, seed=derive_seed(seed, "dsd-sparse"),
                                  desc="dsd sparse"))
    # the pruned weights are exactly zero here: training without a mask lets them re-enter from zero
    redense_cfg = sparse_cfg.model_copy(update={"lr": sparse_cfg.lr * cfg.redense_lr_scale})
    emit("redense", 2, ones, train(model, data, redense_cfg, seed=derive_seed(seed, "dsd-redense"),
                                   desc="dsd re-dense"))
    return out


class DSDProcedure(DSDConfig):
    """Spec kind ``dsd``: dense, sparse, then dense again from zero with a lower learning rate."""

    kind: Literal["dsd"] = "dsd"

    def trainings(self) -> int:
        return 3

    def run(self, model_fn, data, train_cfg, *, seed, keep_history=False, on_round=None, finetune=None, **_):
        cfg = DSDConfig(**self.model_dump(exclude={"kind"}))
        return run_dsd(model_fn, data, train_cfg, cfg, seed=seed, finetune=finetune, keep_history=keep_history,
                       on_round=on_round)
