"""The sanity-check procedure: methods, shared dense runs, checks at the right scope, specs."""
import pytest
import torch
from torch import nn

from prunelab.data import Dataset, Split
from prunelab.errors import ConfigError
from prunelab.experiments import ExperimentSpec
from prunelab.primitives import Mask
from prunelab.primitives.ratios import ratio_mask, smart_ratio_counts
from prunelab.procedures import run_procedure
from prunelab.procedures.sanity import SanityConfig, _start_state, sc_lt_mask
from prunelab.training import TrainConfig, snapshot


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        self.input_shape = (3, 6, 6)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        return self.fc(torch.relu(self.c2(x)).mean((2, 3)))


def _data(n=96, classes=4):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = (torch.rand(n, 3, 6, 6, generator=g) * 80 + y.view(-1, 1, 1, 1) * 50).to(torch.uint8)
    return Dataset("tiny", train=Split(x, y), val=None, test=Split(x[:40], y[:40]), num_classes=classes,
                   input_shape=(3, 6, 6), mean=(0.5,) * 3, std=(0.25,) * 3)


CFG = TrainConfig(lr=0.05, batch_size=32, epochs=1, eval_splits=("test",))


def test_run_sanity_rows_masks_and_shared_dense_runs():
    built = []

    def model_fn(seed):
        torch.manual_seed(seed)
        built.append(Net())
        return built[-1]

    trained = {}

    def on_round(r):
        if r.variant.startswith("dense"):
            trained[r.extra["data_check"]] = snapshot(built[0])

    cfg = SanityConfig(methods=("snip", "grasp", "synflow", "lt", "lr_rewind", "random", "hybrid"),
                       sparsities=(0.6,), data_checks=("random_labels",), ticket_checks=("shuffle",),
                       checked_methods=("snip", "lt", "lr_rewind", "hybrid"), samples_per_class=4,
                       synflow_iterations=5)
    res = run_procedure(model_fn, _data(), CFG, cfg, seed=0, on_row=on_round)
    rows = {r.variant: r for r in res.rows}
    assert len(res.rows) == cfg.trainings() == 2 + 4 * 3 + 3
    assert set(rows) == {"dense", "dense/random_labels", "snip", "snip/random_labels", "snip/shuffle", "grasp",
                         "synflow", "lt", "lt/random_labels", "lt/shuffle", "lr_rewind", "lr_rewind/random_labels",
                         "lr_rewind/shuffle", "random", "hybrid", "hybrid/random_labels", "hybrid/shuffle"}
    total = rows["snip"].total
    for v in ("snip", "grasp", "synflow", "random", "hybrid"):
        assert rows[v].kept == total - round(0.6 * total), v
    # LT / LR rewinding share SC's conv-only magnitude mask of the dense run; hybrid takes its largest weights
    ref = Net()
    ref.load_state_dict(trained["none"])
    assert rows["lt"].mask == rows["lr_rewind"].mask == sc_lt_mask(ref, 0.6)
    assert rows["lt"].mask.kept("fc.weight") == 32
    assert rows["hybrid"].mask == ratio_mask(ref, smart_ratio_counts(ref, 0.6), fill="magnitude")
    ref.load_state_dict(trained["random_labels"])
    assert rows["lt/random_labels"].mask == sc_lt_mask(ref, 0.6)
    assert rows["lt"].mask != rows["lt/random_labels"].mask
    assert rows["lt/shuffle"].mask == rows["lt"].mask
    assert rows["snip/random_labels"].mask != rows["snip"].mask
    assert rows["dense/random_labels"].extra["data_check"] == "random_labels"
    assert all(0 <= r.final["test_acc"] <= 1 for r in res.rows)


def test_start_states():
    init, trained, rewound = {"w": 0}, {"w": 1}, {"w": 2}
    assert _start_state("lt", init, (trained, rewound), 3) == (init, 0)
    assert _start_state("snip", init, None, 3) == (init, 0)
    assert _start_state("lr_rewind", init, (trained, rewound), 3) == (trained, 0)
    assert _start_state("hybrid", init, (trained, rewound), 3) == (trained, 0)
    assert _start_state("lt_rewind", init, (trained, rewound), 3) == (rewound, 3)


def test_sc_lt_mask_overall_sparsity_from_convs_only():
    net = Net()
    m = sc_lt_mask(net, 0.5)
    n_all = m.total()
    assert m.kept("fc.weight") == m.total("fc.weight")
    assert n_all - m.kept() == int(0.5 * n_all)
    conv = Mask.ones(net, "conv")
    w = torch.cat([net.c1.weight.abs().flatten(), net.c2.weight.abs().flatten()])
    thr = w.sort(descending=True).values[conv.total() - int(0.5 * n_all) - 1]
    assert bool((net.c1.weight.abs()[m["c1.weight"]] >= thr).all())
    with pytest.raises(ConfigError, match="lt_scope='conv_linear'"):
        sc_lt_mask(net, 0.995)


def test_config_validation_and_spec():
    with pytest.raises(ValueError, match="sparsity 1.2"):
        SanityConfig(sparsities=(1.2,))
    with pytest.raises(ValueError):
        SanityConfig(methods=("snp",))
    c = SanityConfig(methods=("random", "synflow"), data_checks=("random_labels",))
    assert c.dense_checks() == [] and c.combos("random") == [("none", "none")]
    spec = ExperimentSpec.model_validate({
        "name": "sc", "model": {"name": "vgg11_bn", "options": {"width": 0.25}},
        "dataset": {"name": "cifar10", "train_size": 1000}, "train": {"epochs": 1},
        "procedure": {"kind": "sanity", "methods": ["snip", "lt"], "sparsities": [0.9, 0.98],
                      "data_checks": ["random_labels"], "ticket_checks": ["rearrange"]}})
    assert spec.trainings() == 2 + 2 * (3 + 3)
    assert spec.procedure.kind == "sanity"


def test_lt_rewind_erk_random_and_reinit_check():
    def model_fn(seed):
        torch.manual_seed(seed)
        return Net()

    cfg = SanityConfig(methods=("lt_rewind", "random"), sparsities=(0.5, 0.8), ratio="erk", rewind_iteration=1,
                       ticket_checks=("reinit",), lt_scope="conv_linear")
    res = run_procedure(model_fn, _data(), CFG, cfg, seed=3)
    rows = {(r.variant, r.round): r for r in res.rows}
    assert len(res.rows) == cfg.trainings() == 1 + 2 * 4
    for rnd, s in enumerate((0.5, 0.8)):
        for v in ("lt_rewind", "lt_rewind/reinit", "random", "random/reinit"):
            r = rows[v, rnd]
            assert r.kept == r.total - round(s * r.total), (v, s)
        assert rows["lt_rewind", rnd].mask == rows["lt_rewind/reinit", rnd].mask
        assert rows["random", rnd].extra["ticket_check"] == "none"
    # ERK keeps the small first conv denser than the large second one
    m = rows["random", 1].mask
    assert m.density("c1.weight") > m.density("c2.weight")
