import pytest
import torch
from torch import nn

from prunelab import Mask, MaskEnforcer, prune

OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
}


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 10))


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("mask_grads", [False, True])
def test_pruned_weights_exactly_zero_after_200_steps(opt_name, mask_grads):
    model = net()
    # train dense a little first so optimizer state at pruned positions is non-zero when pruning happens
    opt = OPTIMIZERS[opt_name](model.parameters())
    x, y = torch.randn(16, 3, 6, 6), torch.randint(0, 10, (16,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    mask = prune(model, sparsity=0.8, scope=None)
    enf = MaskEnforcer(model, mask, mask_grads=mask_grads).attach(opt)
    for step in range(200):
        xb = torch.randn(16, 3, 6, 6)
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), y).backward()
        opt.step()
    params = dict(model.named_parameters())
    for n in mask:
        pruned = ~mask.expanded(n)
        assert int(pruned.sum()) > 0
        assert torch.all(params[n][pruned] == 0), f"{opt_name}: revived weights in {n}"
        assert torch.count_nonzero(params[n][mask.expanded(n)]) == mask.kept(n)
    # no forward hooks were installed anywhere
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    enf.detach()


def test_without_enforcer_momentum_revives_weights():
    """The failure the enforcer prevents: zeroing once is not enough under momentum and weight decay."""
    model = net()
    opt = OPTIMIZERS["sgd_momentum"](model.parameters())
    x, y = torch.randn(16, 3, 6, 6), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    mask = prune(model, sparsity=0.8)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert Mask.from_weights(model).kept() > mask.kept()


def test_reset_optimizer_state_zeroes_buffers_at_pruned_positions():
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 3, 6, 6), torch.randint(0, 10, (16,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    mask = prune(model, sparsity=0.5)
    enf = MaskEnforcer(model, mask)
    enf.reset_optimizer_state(opt)
    for n, p in zip(mask, enf.params):
        st = opt.state[p]
        assert torch.all(st["exp_avg"][~mask.expanded(n)] == 0)
        assert torch.all(st["exp_avg_sq"][~mask.expanded(n)] == 0)


def test_channels_last_parameters():
    model = net().to(memory_format=torch.channels_last)
    opt = OPTIMIZERS["adam"](model.parameters())
    mask = prune(model, sparsity=0.7)
    enf = MaskEnforcer(model, mask).attach(opt)
    assert enf.factors[0].is_contiguous(memory_format=torch.channels_last)
    x, y = torch.randn(4, 3, 6, 6).to(memory_format=torch.channels_last), torch.randint(0, 10, (4,))
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert Mask.from_weights(model).kept() == mask.kept()
