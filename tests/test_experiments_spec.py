"""Specs: validation messages, the run id, overrides, sweeps, recipes (no training here)."""
import hashlib
import json

import pytest

from prunelab.errors import ConfigError
from prunelab.experiments import ExperimentSpec, expand, list_recipes, load_plan, parse_overrides
from prunelab.experiments.plan import parse_yaml
from prunelab.training import TrainConfig

from test_experiments_helpers import REPO, TINY


def spec_of(raw, overrides=()):
    runs = expand(raw, parse_overrides(overrides))
    assert len(runs) == 1
    return runs[0].spec


def test_run_id_is_sha256_of_canonical_spec_without_defaults():
    spec = spec_of(TINY)
    canonical = {
        "name": "tiny",
        "model": {"name": "lenet300_100"},
        "dataset": {"name": "mnist1d", "train_size": 300, "val_size": 100},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 100, "epochs": 2.0},
        "procedure": {"kind": "imp", "rounds": 3, "rate": 0.5, "controls": ["random_mask"]},
    }
    assert spec.canonical() == canonical
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    assert spec.run_id() == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_defaults_key_order_and_execution_fields_do_not_change_the_run_id():
    base = spec_of(TINY).run_id()
    explicit = spec_of(TINY, ["train.momentum=0.9", "seed=0", "procedure.rewind=init", "train.eval_splits=[val, test]",
                              "model.options.init=glorot_truncated", "dataset.normalize=standard"])
    assert explicit.run_id() == base
    # where the data is, how many threads, progress bars: not what is computed
    assert spec_of(TINY, ["dataset.root=/somewhere", "threads=2", "train.progress=true"]).run_id() == base
    reordered = dict(reversed(list(TINY.items())))
    reordered["train"] = dict(reversed(list(TINY["train"].items())))
    assert spec_of(reordered).run_id() == base
    assert spec_of(TINY, ["train.epochs=2.0"]).run_id() == base     # 2 and 2.0 are one budget
    # anything that changes the computation changes the id
    for change in ("seed=1", "train.lr=0.02", "procedure.rewind=lr", "model.options.init=glorot_normal",
                   "dataset.val_seed=1"):
        assert spec_of(TINY, [change]).run_id() != base, change


def test_procedure_kind_is_always_part_of_the_id():
    imp = spec_of({**TINY, "procedure": {"kind": "imp", "sparsity": 0.5, "rounds": 1}})
    one = spec_of({**TINY, "procedure": {"kind": "oneshot", "sparsity": 0.5, "rewind": "init"}})
    assert imp.canonical()["procedure"]["kind"] == "imp"
    assert one.canonical()["procedure"]["kind"] == "oneshot"
    assert imp.run_id() != one.run_id()
    cfg = one.procedure.imp_config()
    assert (cfg.rounds, cfg.sparsity, cfg.rewind) == (1, 0.5, "init")


def test_python_objects_and_yaml_give_the_same_spec(tmp_path):
    spec = ExperimentSpec(name="tiny", model={"name": "lenet300_100"},
                          dataset={"name": "mnist1d", "train_size": 300, "val_size": 100},
                          train=TrainConfig(optimizer="adam", lr=1e-2, batch_size=100, epochs=2),
                          procedure={"kind": "imp", "rounds": 3, "rate": 0.5, "controls": ["random_mask"]},
                          threads=1)
    assert spec.run_id() == spec_of(TINY).run_id()
    path = tmp_path / "s.yaml"
    path.write_text(spec.to_yaml())
    assert load_plan(path)[0].spec == spec


@pytest.mark.parametrize("override, expected", [
    ("train.lrr=0.1", ["unknown key 'train.lrr'", "Did you mean 'lr'?", "allowed keys here: optimizer, lr"]),
    ("procedure.rewnd=lr", ["unknown key 'procedure.rewnd'", "Did you mean 'rewind'?"]),
    ("train.lr=-0.1", ["train.lr = -0.1", "allowed range (0, inf)"]),
    ("procedure.sparsity=1.5", ["procedure.sparsity = 1.5", "allowed range [0, 1)"]),
    ("procedure.rate=1.5", ["procedure.rate", "1.5", "[0, 1)"]),
    ("train.optimizer=adma", ["train.optimizer = 'adma'", "allowed: sgd, adam, adamw", "Did you mean 'adam'?"]),
    ("procedure.kind=imq", ["'imq' is not a known procedure", "allowed: imp, oneshot", "Did you mean 'imp'?"]),
    ("model.name=lenet300", ["unknown model 'lenet300'", "Did you mean 'lenet300_100'?"]),
    ("dataset.name=cifar", ["unknown dataset 'cifar'", "cifar10"]),
    ("dataset.augment={flip: true, crop: 4}", ["unknown key 'dataset.augment.crop'", "Did you mean 'crop_padding'?"]),
    ("procedure.controls=[reinit, shuffle]", ["procedure.controls[1] = 'shuffle'", "allowed: reinit, random_mask"]),
    ("procedure.rewind=finetune", ["needs a finetune training config"]),
    ("seed=-1", ["seed = -1", "[0, inf)"]),
])
def test_bad_values_name_the_value_and_what_is_allowed(override, expected):
    with pytest.raises(ConfigError) as e:
        spec_of(TINY, [override])
    for text in expected:
        assert text in str(e.value), (text, str(e.value))


def test_yaml_reads_exponent_floats_and_overrides_parse_values():
    assert parse_yaml("lr: 1e-3\nn: 10\nx: 1.5e+2") == {"lr": 0.001, "n": 10, "x": 150.0}
    assert parse_overrides(["a.b=1e-3", "c=[reinit, random_mask]", "d={x: 1}", "e=text"]) == [
        ("a.b", 0.001), ("c", ["reinit", "random_mask"]), ("d", {"x": 1}), ("e", "text")]
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_overrides(["train.lr"])


def test_sweep_expands_the_cross_product_with_labels():
    raw = {**TINY, "sweep": {"axes": {"seed": [0, 1, 2], "procedure.rewind": ["init", "lr"]}}}
    runs = expand(raw)
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    assert sorted({r.label for r in runs}) == ["rewind=init", "rewind=lr"]
    assert sorted((r.spec.seed, r.spec.procedure.rewind) for r in runs) == [
        (s, w) for s in (0, 1, 2) for w in ("init", "lr")]
    # replicates only: the label is the spec name
    assert {r.label for r in expand({**TINY, "sweep": {"axes": {"seed": [0, 1]}}})} == {"tiny"}
    # overriding an axis fixes it
    fixed = expand(raw, parse_overrides(["seed=7"]))
    assert sorted(r.spec.seed for r in fixed) == [7, 7]
    # sweep points equal up to defaults are one run
    assert len(expand({**TINY, "sweep": {"axes": {"train.momentum": [0.9, 0.9]}}})) == 1


def test_sweep_cases_set_several_keys_together_at_every_axis_point():
    cases = [{"procedure.rewind": "init", "procedure.rounds": 1},
             {"procedure.rewind": "lr", "procedure.rounds": 2, "train.lr": 0.05}]
    runs = expand({**TINY, "sweep": {"cases": cases, "axes": {"seed": [0, 1]}}})
    got = sorted((r.spec.procedure.rewind, r.spec.procedure.rounds, r.spec.train.lr, r.spec.seed) for r in runs)
    lr = TINY["train"]["lr"]
    assert got == [("init", 1, lr, 0), ("init", 1, lr, 1), ("lr", 2, 0.05, 0), ("lr", 2, 0.05, 1)]
    # the label is the case's first entry; a case is one configuration, not a product of its keys
    assert {r.label for r in runs} == {"rewind=init", "rewind=lr"}
    assert {r.label for r in expand({**TINY, "sweep": {"cases": cases}})} == {"rewind=init", "rewind=lr"}
    # --set wins over a case
    assert {r.spec.train.lr for r in expand({**TINY, "sweep": {"cases": cases}}, parse_overrides(["train.lr=0.2"]))} == {0.2}
    named = expand({**TINY, "sweep": {"cases": [{"label": "IMP at lr", **cases[1]}], "axes": {"seed": [0, 1]}}})
    assert {r.label for r in named} == {"IMP at lr"} and {r.spec.procedure.rewind for r in named} == {"lr"}
    with pytest.raises(ConfigError, match="both a sweep axis and set by a case"):
        expand({**TINY, "sweep": {"cases": cases, "axes": {"procedure.rounds": [1, 2]}}})
    with pytest.raises(ConfigError, match="non-empty mapping"):
        expand({**TINY, "sweep": {"cases": [{}]}})
    with pytest.raises(ConfigError, match="sweep case key 'trian.lr': unknown key 'trian'"):
        expand({**TINY, "sweep": {"cases": [{"trian.lr": 0.1}]}})


def test_a_bad_sweep_point_is_reported_with_its_values():
    raw = {**TINY, "sweep": {"axes": {"seed": [0], "train.lr": [0.1, -1]}}}
    with pytest.raises(ConfigError, match=r"sweep point \{'seed': 0, 'train.lr': -1\}.*train.lr = -1"):
        expand(raw)
    with pytest.raises(ConfigError, match="unknown key 'trian'.*Did you mean 'train'"):
        expand({**TINY, "sweep": {"axes": {"trian.lr": [0.1]}}})
    with pytest.raises(ConfigError, match="at least one value"):
        expand({**TINY, "sweep": {"axes": {"seed": []}}})
    with pytest.raises(ConfigError, match="Did you mean 'axes'"):
        expand({**TINY, "sweep": {"axis": {"seed": [1]}}})


def test_every_recipe_parses_and_validates():
    recipes = {name: path for name, path, _ in list_recipes()}
    for required in ("lth/lenet_mnist", "lth/lenet_mnist-small", "lth/conv2_cifar10", "lth/conv2_cifar10-small",
                     "lth/conv4_cifar10", "lth/conv4_cifar10-small", "lth/conv6_cifar10",
                     "lth/conv6_cifar10-small", "quickstart"):
        assert required in recipes, required
    for name, path in recipes.items():
        assert path.is_relative_to(REPO / "recipes")
        runs = load_plan(path)
        assert runs, name
        for r in runs:
            assert r.spec.train.batch_size >= 1
    # the full LTH settings of spec §1.2
    full = load_plan(recipes["lth/lenet_mnist"])
    t, p = full[0].spec.train, full[0].spec.procedure
    assert (t.optimizer, t.lr, t.batch_size, t.iterations) == ("adam", 1.2e-3, 60, 50000)
    assert (p.rate, p.rounding, p.allocation, p.rewind) == ("lenet300_100", "official", "layerwise", "init")
    assert sorted(r.spec.seed for r in full) == [0, 1, 2, 3, 4]
    for n, lr, its in (("conv2", 2e-4, 20000), ("conv4", 3e-4, 25000), ("conv6", 3e-4, 30000)):
        s = load_plan(recipes[f"lth/{n}_cifar10"])[0].spec
        assert (s.model.name, s.train.lr, s.train.iterations, s.procedure.rate) == (n, lr, its, n)
        assert s.dataset.val_size == 5000 and s.dataset.normalize == "divide255" and s.dataset.augment is False
