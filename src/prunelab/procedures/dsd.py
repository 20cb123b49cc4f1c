"""Dense–sparse–dense training (Han et al. 2017, spec §1.7).

1. dense: train the full network;
2. sparse: prune the smallest-magnitude weights (per layer by default) and retrain under the mask;
3. re-dense: lift the mask — the pruned connections re-enter *at zero* — and retrain the full network with
   the learning rate scaled by ``redense_lr_scale`` (≈ 1/10 in the paper).

The sparse phase trains with the ``finetune`` config (default: the main one); the re-dense phase with the
same config and the scaled learning rate. Rows ``dense``, ``sparse``, ``redense``; the stage index is the
phase (0, 1, 2).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Union

from pydantic import Field

from ..primitives.masks import Mask
from ..pruning import prune
from ..seeding import derive_seed
from ..training import snapshot
from .base import Procedure, ProcedureResult, RunContext, register_procedure


@register_procedure("dsd")
class DSDConfig(Procedure):
    """Dense, sparse, then dense again from zero with a lower learning rate."""

    kind: Literal["dsd"] = "dsd"
    stage_index: ClassVar[str] = "phase: 0 dense, 1 sparse, 2 re-dense"

    sparsity: float = Field(0.5, ge=0, lt=1)
    allocation: Literal["layerwise", "global"] = "layerwise"
    scope: Union[str, list[str], None] = None
    ties: Literal["random", "index", "keep"] = "random"
    redense_lr_scale: float = Field(0.1, gt=0)

    def trainings(self) -> int:
        return 3

    def run(self, ctx: RunContext) -> ProcedureResult:
        seed = ctx.seed
        model = ctx.model_fn(seed)
        ones = Mask.ones(model, self.scope)
        ctx.row("dense", 0, ones, ctx.train(model, seed=seed, desc="dsd dense"))
        mask = prune(model, sparsity=self.sparsity, mask=ones.to(next(model.parameters()).device),
                     allocation=self.allocation, ties=self.ties, seed=derive_seed(seed, "dsd-prune"), apply=True)
        sparse_cfg = ctx.finetune or ctx.train_cfg
        ctx.row("sparse", 1, mask, ctx.train(model, sparse_cfg, mask=mask, seed=derive_seed(seed, "dsd-sparse"),
                                             desc="dsd sparse"))
        # the pruned weights are exactly zero here: training without a mask lets them re-enter from zero
        redense_cfg = sparse_cfg.model_copy(update={"lr": sparse_cfg.lr * self.redense_lr_scale})
        ctx.row("redense", 2, ones, ctx.train(model, redense_cfg, seed=derive_seed(seed, "dsd-redense"),
                                              desc="dsd re-dense"))
        ctx.result.model = model
        ctx.result.states["final"] = snapshot(model)
        return ctx.result
