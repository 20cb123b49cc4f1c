"""The training loop: one function, used by every procedure."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, TrainingDivergedError
from ..primitives.enforce import MaskEnforcer
from ..primitives.masks import Mask
from ..seeding import derive_seed, generator
from .checkpoint import Stage, rng_state, set_rng_state, stateful
from .config import TrainConfig
from .state import restore, snapshot


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)        # one row per evaluation
    checkpoints: dict[int, dict] = field(default_factory=dict)  # iteration -> state (weights + buffers)
    iterations: int = 0

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def early_stop(self, split: str = "val") -> dict:
        """The evaluation row with minimum ``split`` loss (the LTH early-stopping iteration)."""
        key = f"{split}_loss"
        rows = [r for r in self.history if key in r]
        return min(rows, key=lambda r: r[key]) if rows else {}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; allowed here: cpu, auto")
    return dev


def _has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision 'fp16' needs a CUDA device; on CPU use 'bf16' or 'fp32'")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        cls, kw = torch.optim.SGD, dict(momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        cls, kw = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW), dict(betas=cfg.betas)
    kw.update(lr=cfg.lr, weight_decay=cfg.weight_decay)
    # One fused kernel per parameter instead of a chain of multi-tensor passes: measured 24-30 % faster
    # training steps for LeNet-300-100 on CPU (SGD, Adam), neutral for conv nets. Devices without fused
    # kernels get the multi-tensor path.
    if not params:
        return cls(params, foreach=True, **kw)
    try:
        return cls(params, fused=True, **kw)
    except RuntimeError:  # torch has no fused kernel for these parameters' device or dtype
        return cls(params, foreach=True, **kw)


@torch.no_grad()
def evaluate(model: nn.Module, data, split: str, *, batch_size: int = 1000, precision: str = "fp32",
             channels_last: bool = False) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on one split of ``data``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ctx = _autocast(precision, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    n = 0
    for x, y in data.batches(split, batch_size, shuffle=False, augment=False, channels_last=channels_last):
        with ctx:
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
        n += y.numel()
    model.train(was_training)
    return {f"{split}_loss": float(loss_sum) / max(n, 1), f"{split}_acc": float(correct) / max(n, 1)}


def evaluate_splits(model: nn.Module, data, splits: Sequence[str], *, batch_size: int = 1000,
                    precision: str = "fp32", channels_last: bool = False) -> dict[str, float]:
    """:func:`evaluate` on each of ``splits`` in one row; a ``val`` split the data lacks is skipped."""
    row: dict[str, float] = {}
    for split in splits:
        if split == "val" and getattr(data, "val", None) is None:
            continue
        row.update(evaluate(model, data, split, batch_size=batch_size, precision=precision,
                            channels_last=channels_last))
    return row


Callback = Callable[[int, nn.Module], None]


class MaskSchedule:
    """A mask that changes during training (gradual and filter schedules), applied by the loop.

    ``initial(model)`` gives the mask training starts with; ``update(it, model, optimizer)`` runs after
    every step (after the mask was enforced) and returns a new mask to enforce from now on, or None.
    ``state_dict`` / ``load_state_dict`` make it resumable mid-training."""

    def initial(self, model: nn.Module) -> Optional[Mask]:
        return None

    def update(self, it: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> Optional[Mask]:
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def place(model: nn.Module, data, cfg: TrainConfig) -> tuple[torch.device, bool]:
    """Move ``model`` (and ``data``, once) to the cfg's device and memory format; returns both choices."""
    device = resolve_device(cfg.device)
    model.to(device)
    if getattr(data, "device", device) != device:
        data.to(device)  # once, in place: batches are then sliced on the device with no host copies
    channels_last = cfg.channels_last if cfg.channels_last is not None else _has_conv2d(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return device, channels_last


def train(model: nn.Module, data, cfg: TrainConfig, *, mask: Optional[Mask] = None, seed: int = 0,
          start_iteration: int = 0, checkpoint_at: Sequence[int] = (), callbacks: Sequence[Callback] = (),
          desc: str = "train", params=None, penalty: Optional[Callable[[nn.Module], torch.Tensor]] = None,
          extra_optimizers: Sequence[torch.optim.Optimizer] = (),
          optimizer: Optional[torch.optim.Optimizer] = None, mask_schedule: Optional[MaskSchedule] = None,
          stage: Optional[Stage] = None) -> TrainResult:
    """Train ``model`` in place on ``data`` per ``cfg``; pruned weights (``mask``) stay exactly zero.

    The run is a pure function of (initial state, mask, cfg, seed, start_iteration): batch order and
    augmentation of epoch ``e`` come from a generator seeded with (seed, e), so training from
    ``start_iteration = k`` replays exactly the batches an uninterrupted run sees from iteration k on
    (rewinding to iteration k, resuming).

    Hooks for procedures that learn more than weights: ``params`` are what the cfg's optimizer updates
    (default: every parameter) unless ``optimizer`` is given (an optimizer built by
    :func:`build_optimizer` and kept by the caller, so momentum carries over between calls; the cfg's LR
    schedule still drives it), ``extra_optimizers`` are stepped alongside it with their own settings (mask
    scores, gates; not on the LR schedule), ``penalty(model)`` is added to the cross-entropy (L1 on masks,
    expected L0, L1 on BN scales). ``callbacks(it, model)`` run after every step; the reported training
    loss is the cross-entropy alone; a callback with an ``on_eval(row, model)`` method also receives every
    evaluation row as the loop records it. ``mask_schedule`` changes the enforced mask during training (it
    starts from ``mask`` if given, else from its own ``initial``).

    ``stage`` (from :class:`~prunelab.training.checkpoint.Checkpoints`) makes the call resumable: partial
    checkpoints while it trains, a final record when it ends. A stage that already ended returns its result
    and restores the model, the caller's optimizers, the stateful callbacks and the RNG as training left
    them; an interrupted one continues from its last partial checkpoint with identical numbers.
    """
    device, channels_last = place(model, data, cfg)
    kept_optimizers = ([] if optimizer is None else [optimizer]) + list(extra_optimizers)
    hooks = stateful([*callbacks, *([mask_schedule] if mask_schedule is not None else [])])
    if stage is not None:
        done = stage.load_final()
        if done is not None:
            _restore_stage(done, model, kept_optimizers, hooks)
            stage.owner.resumed.append((stage.index, "final", done["iterations"]))
            return TrainResult(done["history"], {int(k): v for k, v in done["checkpoints"].items()},
                               done["iterations"])
    model.train()
    n_train = len(data.train)
    per_epoch = cfg.iterations_per_epoch(n_train)
    total = cfg.total_iterations(n_train)
    if not 0 <= start_iteration <= total:
        raise ConfigError(f"start_iteration {start_iteration} is outside [0, {total}] (the budget)")
    eval_every = cfg.eval_every or per_epoch
    checkpoint_at = set(int(c) for c in checkpoint_at)
    torch.manual_seed(derive_seed(seed, "torch-global", start_iteration))

    if optimizer is None:
        optimizer = build_optimizer(cfg, model.parameters() if params is None else params)
    optimizers = [optimizer, *extra_optimizers]
    if mask is None and mask_schedule is not None:
        mask = mask_schedule.initial(model)
    enforcer = None
    if mask is not None:
        enforcer = MaskEnforcer(model, mask.to(device), mask_grads=cfg.mask_grads).attach(optimizer)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    autocast = _autocast(cfg.precision, device)
    result = TrainResult()

    def set_lr(it: int) -> float:
        lr = cfg.lr * cfg.lr_factor(it, n_train)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def run_eval(it: int, run_loss, run_correct, run_n) -> None:
        row = {"iteration": it, "epoch": it / per_epoch, "lr": optimizer.param_groups[0]["lr"]}
        if run_n:
            row["train_running_loss"] = float(run_loss) / run_n
            row["train_running_acc"] = float(run_correct) / run_n
            if not math.isfinite(row["train_running_loss"]):
                raise TrainingDivergedError(f"{desc}: training loss became {row['train_running_loss']} "
                                            f"by iteration {it}; lower the learning rate (lr={cfg.lr})")
        row.update(evaluate_splits(model, data, cfg.eval_splits, batch_size=cfg.eval_batch_size,
                                   precision=cfg.precision, channels_last=channels_last))
        model.train()
        result.history.append(row)
        for cb in callbacks:   # callbacks that act on evaluations see the loop's own (no second pass)
            if hasattr(cb, "on_eval"):
                cb.on_eval(row, model)

    it = start_iteration
    run_loss = torch.zeros((), dtype=torch.float64, device=device)
    run_correct = torch.zeros((), dtype=torch.int64, device=device)
    run_n = 0
    partial = stage.load_partial() if stage is not None else None
    if partial is not None:
        it, run_n = partial["loop"]["iteration"], partial["loop"]["run_n"]
        run_loss.copy_(partial["loop"]["run_loss"])
        run_correct.copy_(partial["loop"]["run_correct"])
        result.history = partial["history"]
        result.checkpoints = {int(k): v for k, v in partial["checkpoints"].items()}
        for opt, st in zip(optimizers, partial["optimizers"]):
            load_optimizer_state(opt, st)
        if scaler is not None:
            scaler.load_state_dict(partial["scaler"])
        _restore_stage(partial, model, [], hooks)
        if partial["mask"] is not None:   # a mask schedule may have changed the mask since the start
            m = Mask(partial["mask"]["masks"], {n: tuple(s) for n, s in partial["mask"]["shapes"].items()})
            if enforcer is None:
                enforcer = MaskEnforcer(model, m.to(device), mask_grads=cfg.mask_grads).attach(optimizer)
            else:
                enforcer.set_mask(m.to(device))
        stage.owner.resumed.append((stage.index, "partial", it))
    elif it in checkpoint_at:
        result.checkpoints[it] = snapshot(model)

    def stage_state(final: bool) -> dict:
        state = {"model": snapshot(model), "hooks": [h.state_dict() for h in hooks], "rng": rng_state(),
                 "history": result.history, "checkpoints": {str(k): v for k, v in result.checkpoints.items()},
                 "optimizers": [o.state_dict() for o in (kept_optimizers if final else optimizers)]}
        if final:
            state["iterations"] = it
        else:
            state["loop"] = {"iteration": it, "run_n": run_n, "run_loss": run_loss.clone(),
                             "run_correct": run_correct.clone()}
            state["mask"] = None if enforcer is None else {"masks": dict(enforcer.mask.items()),
                                                           "shapes": dict(enforcer.mask.shapes)}
            state["scaler"] = scaler.state_dict() if scaler is not None else None
        return state
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=it, desc=desc, disable=not cfg.progress, leave=False)
    except ImportError:  # pragma: no cover
        bar = None
    epoch = it // per_epoch
    skip = it - epoch * per_epoch
    while it < total:
        g = generator(seed, "data-order", epoch)
        for b, (x, y) in enumerate(data.batches("train", cfg.batch_size, shuffle=True, generator=g,
                                                augment=cfg.augment, drop_last=cfg.drop_last,
                                                channels_last=channels_last)):
            if b < skip:
                continue
            if it >= total:
                break
            set_lr(it)
            with autocast:
                out = model(x)
                loss = F.cross_entropy(out.float(), y)
                objective = loss if penalty is None else loss + penalty(model)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(objective).backward()
                for opt in optimizers:
                    scaler.step(opt)
                scaler.update()
            else:
                objective.backward()
                for opt in optimizers:
                    opt.step()
            it += 1
            with torch.no_grad():
                run_loss += loss.detach().double() * y.numel()
                run_correct += (out.argmax(1) == y).sum()
            run_n += y.numel()
            if it % cfg.nan_check_every == 0 and not torch.isfinite(run_loss):
                raise TrainingDivergedError(f"{desc}: training loss became non-finite by iteration {it}; "
                                            f"lower the learning rate (lr={cfg.lr})")
            if mask_schedule is not None:
                new = mask_schedule.update(it, model, optimizer)
                if new is not None:
                    if enforcer is None:
                        enforcer = MaskEnforcer(model, new.to(device), mask_grads=cfg.mask_grads).attach(optimizer)
                    else:
                        enforcer.set_mask(new.to(device))
            for cb in callbacks:
                cb(it, model)
            if it in checkpoint_at:
                result.checkpoints[it] = snapshot(model)
            if it % eval_every == 0 or it == total:
                run_eval(it, run_loss, run_correct, run_n)
                run_loss.zero_()
                run_correct.zero_()
                run_n = 0
            if stage is not None and it < total and stage.due(it, per_epoch):
                stage.save_partial(stage_state(final=False))
            if bar is not None:
                bar.update(1)
        skip = 0
        epoch += 1
    if bar is not None:
        bar.close()
    if enforcer is not None:
        enforcer.detach()
    if not result.history or result.history[-1]["iteration"] != it:
        run_eval(it, run_loss, run_correct, run_n)
    result.iterations = it
    if stage is not None:
        stage.save_final(stage_state(final=True))
    return result


def _restore_stage(state: dict, model: nn.Module, optimizers: Sequence[torch.optim.Optimizer], hooks) -> None:
    """Put the model, ``optimizers``, stateful hooks and the global RNG back as a checkpoint holds them."""
    restore(model, state["model"])
    for opt, st in zip(optimizers, state["optimizers"]):
        load_optimizer_state(opt, st)
    for h, st in zip(hooks, state["hooks"]):
        h.load_state_dict(st)
    set_rng_state(state["rng"])


@torch.no_grad()
def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict`` with every per-parameter buffer given its parameter's memory layout: files
    hold contiguous tensors, and fused kernels walk a channels_last parameter and its momentum in step."""
    opt.load_state_dict(state)
    for p, st in opt.state.items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.shape == p.shape and v.stride() != p.stride():
                st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)

