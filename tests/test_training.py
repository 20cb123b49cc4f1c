import math

import pytest
import torch

from prunelab import ConfigError, TrainConfig, TrainingDivergedError, prune, train
from prunelab.training import restore, snapshot, evaluate

from conftest import tiny_mlp


def params_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_deterministic_given_seed(blobs):
    cfg = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=3)
    a, b = tiny_mlp(1), tiny_mlp(1)
    ra, rb = train(a, blobs, cfg, seed=5), train(b, blobs, cfg, seed=5)
    assert params_equal(a, b) and ra.history == rb.history
    c = tiny_mlp(1)
    train(c, blobs, cfg, seed=6)
    assert not params_equal(a, c)


def test_learns_and_reports_history(blobs):
    cfg = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=10, eval_splits=("train", "val", "test"))
    m = tiny_mlp(0)
    res = train(m, blobs, cfg, seed=0)
    per_epoch = math.ceil(240 / 32)
    assert [r["iteration"] for r in res.history] == [per_epoch * e for e in range(1, 11)]
    assert res.final["test_acc"] > 0.9 and res.final["train_acc"] > 0.9
    # the evaluation equals an independent computation
    with torch.no_grad():
        x = (blobs.test.x - 0.0) / 1.0
        acc = (m(x).argmax(1) == blobs.test.y).float().mean().item()
    assert res.final["test_acc"] == pytest.approx(acc)
    es = res.early_stop("val")
    assert es["val_loss"] == min(r["val_loss"] for r in res.history)


def test_rewind_to_iteration_replays_the_same_batches(blobs):
    """Plain SGD has no optimizer state, so continuing from checkpoint k must reproduce the full run."""
    cfg = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.0, batch_size=32, iterations=30,
                      schedule="multistep", milestones=(20,))
    full = tiny_mlp(0)
    res = train(full, blobs, cfg, seed=3, checkpoint_at=(0, 11))
    resumed = tiny_mlp(99)
    restore(resumed, res.checkpoints[11])
    train(resumed, blobs, cfg, seed=3, start_iteration=11)
    assert params_equal(full, resumed)
    init = tiny_mlp(0)
    assert all(torch.equal(v, init.state_dict()[k]) for k, v in res.checkpoints[0].items())


def test_checkpoints_include_bn_buffers(blobs):
    from torch import nn
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    res = train(m, blobs, TrainConfig(lr=0.05, batch_size=32, iterations=5), checkpoint_at=(3,))
    ck = res.checkpoints[3]
    assert int(ck["1.num_batches_tracked"]) == 3 and not torch.equal(ck["1.running_mean"], torch.zeros(16))
    assert int(m[1].num_batches_tracked) == 5


def test_masked_training_keeps_zeros(blobs):
    m = tiny_mlp(0)
    mask = prune(m, sparsity=0.75)
    train(m, blobs, TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1, batch_size=16, iterations=50),
          mask=mask)
    from prunelab import Mask
    assert Mask.from_weights(m).kept() == mask.kept()


def test_lr_schedules():
    c = TrainConfig(lr=1.0, iterations=100, schedule="multistep", milestones=(50, 75), gamma=0.1)
    assert [c.lr_factor(i, 10) for i in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, .1, .1, .01, .01])
    cos = TrainConfig(lr=1.0, iterations=100, schedule="cosine")
    assert cos.lr_factor(0, 10) == 1.0 and cos.lr_factor(50, 10) == pytest.approx(0.5)
    assert cos.lr_factor(100, 10) == pytest.approx(0.0, abs=1e-12)
    w = TrainConfig(lr=1.0, iterations=100, warmup_iterations=4)
    assert [w.lr_factor(i, 10) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    ep = TrainConfig(lr=1.0, epochs=4, batch_size=10, schedule="multistep", milestones=(2,))
    assert ep.total_iterations(95) == 40 and ep.milestone_iterations(95) == [20]


def test_config_errors_name_values():
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-0.1, epochs=1)
    with pytest.raises(ValueError, match="exactly one budget"):
        TrainConfig(lr=0.1)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop", epochs=1)
    with pytest.raises(ValueError, match="momentun"):
        TrainConfig(momentun=0.9, epochs=1)


def test_nan_detection_stops_with_clear_error(blobs):
    m = tiny_mlp(0)
    with torch.no_grad():
        m.fc1.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="non-finite|nan"):
        train(m, blobs, TrainConfig(lr=0.1, batch_size=32, iterations=60, nan_check_every=10))


def test_device_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="cuda"):
        train(tiny_mlp(0), None, TrainConfig(lr=0.1, iterations=1, device="cuda"))


def test_checkpoint_save_load_bit_exact_without_pickle(tmp_path, monkeypatch):
    from torch import nn
    from prunelab.training import load_state, save_state
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(memory_format=torch.channels_last)
    m(torch.randn(2, 3, 5, 5))  # populate BN running statistics
    state = snapshot(m)
    save_state(tmp_path / "s.safetensors", state, {"iteration": 7})
    import pickle
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: (_ for _ in ()).throw(AssertionError("unpickled")))
    loaded, meta = load_state(tmp_path / "s.safetensors")
    assert meta == {"iteration": 7} and loaded.keys() == state.keys()
    for k in state:
        assert torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype
    m2 = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    restore(m2, loaded)
    assert all(torch.equal(a, b) for a, b in zip(m2.state_dict().values(), state.values()))


def test_bf16_autocast_training_keeps_mask(blobs):
    m = tiny_mlp(0)
    mask = prune(m, sparsity=0.5)
    res = train(m, blobs, TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=3, precision="bf16"),
                mask=mask)
    from prunelab import Mask
    assert Mask.from_weights(m).kept() == mask.kept() and res.final["test_acc"] > 0.8
    assert m.fc1.weight.dtype == torch.float32  # autocast: master weights stay fp32


def test_deepcopy_of_masked_model_works(blobs):
    import copy
    m = tiny_mlp(0)
    mask = prune(m, sparsity=0.5)
    train(m, blobs, TrainConfig(lr=0.05, batch_size=32, iterations=3), mask=mask)
    clone = copy.deepcopy(m)
    assert all(torch.equal(a, b) for a, b in zip(clone.state_dict().values(), m.state_dict().values()))


def test_penalty_and_extra_optimizer_hooks(blobs):
    """One SGD step: the penalty's gradient adds to the cross-entropy's; an extra optimizer updates its
    own parameters with its own learning rate while the cfg's optimizer leaves them alone."""
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=32, iterations=1)
    ref, pen = tiny_mlp(3), tiny_mlp(3)
    train(ref, blobs, cfg, seed=1)
    c = 0.25
    w = pen.fc1.weight
    train(pen, blobs, cfg, seed=1, penalty=lambda m: c * m.fc1.weight.sum())
    assert torch.allclose(w, ref.fc1.weight - 0.1 * c, atol=1e-6)
    assert torch.equal(pen.out.weight, ref.out.weight)

    split, start = tiny_mlp(3), tiny_mlp(3)
    bias = split.fc1.bias
    others = [p for p in split.parameters() if p is not bias]
    extra = torch.optim.SGD([bias], lr=0.3)
    train(split, blobs, cfg, seed=1, params=others, extra_optimizers=[extra])
    assert torch.equal(split.fc1.weight, ref.fc1.weight)
    grad_step = start.fc1.bias - ref.fc1.bias            # 0.1 * grad
    assert torch.allclose(start.fc1.bias - bias, 3 * grad_step, atol=1e-6)


def test_passed_optimizer_keeps_momentum_across_calls(blobs):
    """Two calls sharing one optimizer (the second resuming at iteration 1) equal one uninterrupted run;
    with a fresh optimizer per call the momentum restarts and the result differs."""
    from prunelab.training.loop import build_optimizer
    cfg1 = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=32, iterations=1)
    cfg2 = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=32, iterations=2)
    whole = tiny_mlp(4)
    train(whole, blobs, cfg2, seed=3)
    shared = tiny_mlp(4)
    opt = build_optimizer(cfg2, shared.parameters())
    train(shared, blobs, cfg1, seed=3, optimizer=opt)
    train(shared, blobs, cfg2, seed=3, optimizer=opt, start_iteration=1)
    assert params_equal(whole, shared)
    fresh = tiny_mlp(4)
    train(fresh, blobs, cfg1, seed=3)
    train(fresh, blobs, cfg2, seed=3, start_iteration=1)
    assert not params_equal(whole, fresh)


_HOST_SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


def _count_host_syncs(fn) -> int:
    """Calls of the Tensor methods that copy a value to the host (a device sync on an accelerator)."""
    calls = [0]
    originals = {name: getattr(torch.Tensor, name) for name in _HOST_SYNCS}

    def counting(orig):
        def counted(self, *a, **k):
            calls[0] += 1
            return orig(self, *a, **k)
        return counted
    try:
        for name, orig in originals.items():
            setattr(torch.Tensor, name, counting(orig))
        fn()
    finally:
        for name, orig in originals.items():
            setattr(torch.Tensor, name, orig)
    return calls[0]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_training_step_has_no_host_sync(blobs, opt):
    """Between evaluations a step never reads a tensor value on the host: the host syncs of a run do not
    grow with its number of steps (the evaluation at the end reads its results once), apart from the NaN
    check every ``nan_check_every`` steps. Masked and unmasked, SGD with momentum and Adam."""
    def syncs(iterations, masked, nan_check_every=10_000):
        m = tiny_mlp(0)
        mask = prune(m, sparsity=0.5) if masked else None
        cfg = TrainConfig(optimizer=opt, lr=0.01, batch_size=32, iterations=iterations, eval_every=iterations,
                          eval_splits=("test",), nan_check_every=nan_check_every)
        return _count_host_syncs(lambda: train(m, blobs, cfg, mask=mask, seed=0))

    for masked in (False, True):
        short, long = syncs(4, masked), syncs(40, masked)
        assert short == long > 0, (masked, short, long)   # > 0: the patch does see the evaluation's reads
    assert syncs(40, True, nan_check_every=10) == syncs(40, True) + 4  # the NaN check, every 10th step
