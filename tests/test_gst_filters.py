"""GST filter masks (spec §2.3): BN γ/β masked with the filter, shortcut rule, filter scores."""
import math

import numpy as np
import pytest
import torch

from prunelab.errors import ConfigError
from prunelab.models import build_model
from prunelab.primitives import Mask, compute_scores
from prunelab.primitives.filter_scores import ActivationTracker, expected_bn_relu
from gst_helpers import channel_outputs
from prunelab.primitives.filters import (FilterMasking, block_shortcuts, conv_bn_pairs,
                                         filter_mask, resolve_convs, with_batchnorm)


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            with torch.no_grad():
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def test_conv_bn_pairs_and_names():
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.125)
    pairs = conv_bn_pairs(vgg)
    assert pairs["features.0"] == "features.1" and pairs["features.25"] == "features.26"
    assert list(resolve_convs(vgg, ["conv5", "conv8"])) == ["features.15", "features.25"]
    rn = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0)
    pairs = conv_bn_pairs(rn)
    assert pairs["layer1.0.conv2"] == "layer1.0.bn2" and pairs["conv1"] == "bn1"
    assert "layer2.0.conv2" in block_shortcuts(rn)
    assert len(resolve_convs(rn, ["layer*.*.conv*"])) == 18
    with pytest.raises(ConfigError, match="conv99"):
        resolve_convs(vgg, ["conv99"])


def test_with_batchnorm_covers_gamma_and_beta():
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.125)
    m = filter_mask(vgg, ["conv8"])
    assert m["features.25.weight"].shape == (64, 1, 1, 1)
    full = with_batchnorm(m, vgg)
    assert set(full) == {"features.25.weight", "features.26.weight", "features.26.bias"}


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pruned_vgg_channel_outputs_exactly_zero_after_bn(mode):
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.125)
    _randomise_bn(vgg)  # nonzero conv bias, BN β and running mean would all leak without the BN mask
    m = filter_mask(vgg, ["conv5"])
    w = m["features.15.weight"].clone()
    w[[0, 3, 7]] = False
    masking = FilterMasking(vgg, Mask({"features.15.weight": w}, m.shapes))
    vgg.train(mode == "train")
    out = channel_outputs(vgg, torch.randn(4, 3, 32, 32), {"bn": vgg.features[16], "relu": vgg.features[17]})
    for key in ("bn", "relu"):
        assert torch.equal(out[key][:, [0, 3, 7]], torch.zeros_like(out[key][:, [0, 3, 7]]))
    assert out["bn"][:, 1].abs().sum() > 0
    masking.remove()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_pruned_resnet20_block_output_zero_through_residual_add(mode):
    rn = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0)
    _randomise_bn(rn)
    m = filter_mask(rn, ["layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv2"])
    pruned = {"layer1.0.conv1.weight": [1, 2], "layer1.0.conv2.weight": [0, 5, 9], "layer2.0.conv2.weight": [4, 31]}
    masks = {}
    for n in m:
        t = m[n].clone()
        t[pruned[n]] = False
        masks[n] = t
    masking = FilterMasking(rn, Mask(masks, m.shapes))
    # one Adam step with the mask re-applied after it, as during training
    opt = torch.optim.Adam(rn.parameters(), lr=0.1)
    rn.train()
    rn(torch.randn(8, 3, 32, 32)).logsumexp(1).mean().backward()
    opt.step()
    masking.apply()
    rn.train(mode == "train")
    x = torch.randn(4, 3, 32, 32)
    out = channel_outputs(rn, x, {"b10": rn.layer1[0], "b20": rn.layer2[0], "bn1": rn.layer1[0].bn1})
    assert torch.equal(out["bn1"][:, [1, 2]], torch.zeros(4, 2, 32, 32))
    assert torch.equal(out["b10"][:, [0, 5, 9]], torch.zeros(4, 3, 32, 32))
    assert torch.equal(out["b20"][:, [4, 31]], torch.zeros(4, 2, 16, 16))
    assert out["b10"][:, 1].abs().sum() > 0  # the shortcut still feeds kept channels
    masking.remove()
    out = channel_outputs(rn, x, {"b10": rn.layer1[0]})
    assert out["b10"][:, [0, 5, 9]].abs().sum() > 0  # without the shortcut rule the identity leaks in


def test_l1_l2_filter_scores_are_filter_norms():
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.125)
    m = filter_mask(vgg, ["conv1"])
    w = vgg.features[0].weight.detach()
    l1 = compute_scores("l1", vgg, m)["features.0.weight"].flatten()
    l2 = compute_scores("l2", vgg, m)["features.0.weight"].flatten()
    for i in range(w.shape[0]):
        assert l1[i].item() == pytest.approx(sum(abs(v) for v in w[i].flatten().tolist()), rel=1e-5)
        assert l2[i].item() == pytest.approx(math.sqrt(sum(v * v for v in w[i].flatten().tolist())), rel=1e-5)


def _numeric_relu_mean(gamma, beta):
    # E[max(0, y)], y ~ N(beta, gamma^2), by the trapezoid rule on a fine grid: independent of the closed form
    s = abs(gamma)
    y = np.linspace(beta - 12 * s, beta + 12 * s, 200001)
    pdf = np.exp(-0.5 * ((y - beta) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    return float(np.trapezoid(np.maximum(y, 0) * pdf, y))


def test_ebn_matches_numerical_expectation():
    gamma = torch.tensor([1.0, 0.5, -2.0, 0.3])
    beta = torch.tensor([0.0, -1.0, 0.7, 2.0])
    e = expected_bn_relu(gamma, beta)
    for i in range(4):
        assert e[i].item() == pytest.approx(_numeric_relu_mean(gamma[i].item(), beta[i].item()), abs=1e-6)
    signed = expected_bn_relu(gamma, beta, signed=True)
    assert torch.allclose(signed[[0, 1, 3]], e[[0, 1, 3]])  # same where gamma > 0
    # negative gamma: (1 - Phi(b/|g|))*b + g*phi(b/|g|), by hand
    a = 0.7 / 2.0
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    assert signed[2].item() == pytest.approx((1 - Phi) * 0.7 - 2.0 * phi, abs=1e-7)
    # a channel whose BN is far below zero has Z = 0 (underflow): the score is 0, not NaN
    assert expected_bn_relu(torch.tensor([1e-3]), torch.tensor([-100.0])).item() == 0.0


def test_ebn_score_shapes_and_values():
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.125)
    _randomise_bn(vgg)
    m = filter_mask(vgg, ["conv2"])
    s = compute_scores("ebn", vgg, m)["features.4.weight"]
    bn = vgg.features[5]
    assert s.shape == (16, 1, 1, 1)
    assert torch.allclose(s.flatten(), expected_bn_relu(bn.weight.detach(), bn.bias.detach()).float())


def test_activation_tracker_running_mean():
    rn = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0)
    tr = ActivationTracker(rn, ["layer1.0.conv1", "layer1.0.conv2"], every=2, momentum=0.1)
    rn.train()
    xs = [torch.randn(2, 3, 32, 32) for _ in range(3)]
    seen, bn2 = [], []
    blk = rn.layer1[0]
    hb = blk.bn2.register_forward_hook(lambda m, i, o: bn2.append(o.detach()))
    # conv2's activation: bn2 output + shortcut, before the block's final ReLU (GST's reading)
    h = blk.shortcut.register_forward_hook(
        lambda m, i, o: seen.append((bn2[-1] + o.detach()).abs().mean(dim=(0, 2, 3))))
    for x in xs:
        rn(x)
    h.remove()
    hb.remove()
    # updates at the 1st and 3rd pass (every=2): first sets, then EMA
    expect = 0.9 * seen[0] + 0.1 * seen[2]
    assert torch.allclose(tr.values["layer1.0.conv2"], expect, atol=1e-6)
    m = filter_mask(rn, ["layer1.0.conv2"])
    score = compute_scores("activations", rn, m, activations=tr)["layer1.0.conv2.weight"]
    assert torch.allclose(score.flatten(), expect, atol=1e-6)
    with pytest.raises(ConfigError, match="ActivationTracker"):
        compute_scores("activations", rn, m)
    tr.remove()


class _OneBlock(torch.nn.Module):
    """A single residual block (identity shortcut) as the whole network."""

    def __init__(self):
        super().__init__()
        from prunelab.models.resnet import BasicBlock
        self.block = BasicBlock(2, 2, 1, "A")

    def forward(self, x):
        return self.block(x)


def _one_block_known():
    """conv weights 0, so in training mode BN's output is exactly its β (x̂ = 0/sqrt(var + eps) = 0):
    BN1 → β1 = (-1, 0.5), BN2 → β2 = (-3, 2). The identity shortcut adds x: channel 0 alternates 0 and 4
    over the pixels, channel 1 is 1 everywhere. Per channel, mean |.| over batch and pixels:
      conv1: BN1 output (pre-ReLU)                 = (1, 0.5)     [post-ReLU would be (0, 0.5)]
      conv2: BN2 output alone                      = (3, 2)
             BN2 + shortcut, before the ReLU       = (|-3|+|1|)/2, |3| = (2, 3)       <- GST
             after the block's ReLU                = (0 + 1)/2, 3  = (0.5, 3)
    """
    net = _OneBlock()
    with torch.no_grad():
        for conv, bn, beta in ((net.block.conv1, net.block.bn1, (-1.0, 0.5)),
                               (net.block.conv2, net.block.bn2, (-3.0, 2.0))):
            conv.weight.zero_()
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.tensor(beta))
    x = torch.ones(2, 2, 4, 4)
    x[:, 0] = 0.0
    x[:, 0, :, ::2] = 4.0
    return net, x


def test_activation_score_of_residual_conv2_is_pre_relu_sum_hand_computed():
    net, x = _one_block_known()
    tr = ActivationTracker(net, ["block.conv1", "block.conv2"], every=1, momentum=1.0)
    net.train()
    out = net(x)
    assert torch.allclose(out.abs().mean(dim=(0, 2, 3)), torch.tensor([0.5, 3.0]))  # the post-ReLU reading
    assert torch.allclose(tr.values["block.conv1"], torch.tensor([1.0, 0.5]))
    assert torch.allclose(tr.values["block.conv2"], torch.tensor([2.0, 3.0]))
    m = filter_mask(net, ["block.conv1", "block.conv2"])
    s = compute_scores("activations", net, m, activations=tr)
    assert torch.allclose(s["block.conv2.weight"].flatten(), torch.tensor([2.0, 3.0]))
    assert torch.allclose(s["block.conv1.weight"].flatten(), torch.tensor([1.0, 0.5]))
    # eval passes do not update; an EMA update (momentum 0.5) mixes in the new pre-ReLU value
    net.eval()
    net(2 * x)
    assert torch.allclose(tr.values["block.conv2"], torch.tensor([2.0, 3.0]))
    tr.momentum = 0.5
    net.train()
    net(2 * x)   # pre-ReLU: channel 0 alternates -3 and 5 -> 4; channel 1: 2 + 2 = 4
    assert torch.allclose(tr.values["block.conv2"], torch.tensor([0.5 * 2 + 0.5 * 4, 0.5 * 3 + 0.5 * 4]))
    tr.remove()
    assert not tr._pending and not net.block.bn2._forward_hooks and not net.block.shortcut._forward_hooks


def test_activation_score_of_residual_conv2_sees_the_masked_shortcut():
    # the procedure builds the tracker before FilterMasking, whose shortcut hook is registered later; the
    # score still uses the shortcut as the block adds it: a pruned channel gets BN2's output (masked: 0) only
    net, x = _one_block_known()
    tr = ActivationTracker(net, ["block.conv2"], every=1, momentum=1.0)
    fm = filter_mask(net, ["block.conv2"])
    keep = fm["block.conv2.weight"].clone()
    keep[0] = False
    masking = FilterMasking(net, Mask({"block.conv2.weight": keep}, fm.shapes))
    net.train()
    net(x)
    assert torch.allclose(tr.values["block.conv2"], torch.tensor([0.0, 3.0]))
    masking.remove()
    tr.remove()
