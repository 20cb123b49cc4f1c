"""``prunelab export RUN_ID --out FILE``: a stored GST stability run becomes a smaller dense model on disk."""
import json

import pytest
import torch

import prunelab.data
from prunelab.cli import main
from prunelab.export import load_exported
from prunelab.data import Dataset, Split
from prunelab.experiments import ExperimentSpec, Store, run_experiment
from prunelab.io import load_tensors
from prunelab.models import build_model

SPEC = {
    "name": "tiny-gst", "model": {"name": "resnet20", "options": {"width": 0.25}},
    "dataset": {"name": "cifar10"},
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 1, "eval_splits": ["test"]},
    "procedure": {"kind": "stability", "layers": {"layer*.*.conv1": {"fraction": 0.5, "start": 0, "end": 0}}},
    "threads": 1,
}


def _tiny_cifar(*args, **kwargs):
    """CIFAR-10-shaped random images (64 train, 32 test): the spec's dataset without the download."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        return Split(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (n,), generator=g))

    return Dataset("cifar10", train=split(64), val=None, test=split(32), num_classes=10, input_shape=(3, 32, 32),
                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-store")
    mp = pytest.MonkeyPatch()
    mp.setattr(prunelab.data, "load_dataset", _tiny_cifar)
    try:
        spec = ExperimentSpec.model_validate(SPEC)
        run_experiment(spec, root, progress=False, log=None)
        dense = ExperimentSpec.model_validate({**SPEC, "procedure": {"kind": "stability"}})  # no layers: no filter mask
        run_experiment(dense, root, progress=False, log=None)
    finally:
        mp.undo()
    return root, spec.run_id(), dense.run_id()


def test_export_writes_a_smaller_model_and_its_description(store, tmp_path, capsys):
    root, run_id, _ = store
    out = tmp_path / "small.safetensors"
    assert main(["export", run_id, "--results", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "layer1.0.conv1" in printed and "4->2" in printed and "parameters" in printed

    tensors, meta = load_tensors(out)
    full = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.25).state_dict()
    assert meta["run_id"] == run_id
    # option-A shortcuts become IndexShortcuts (an index buffer, no parameters); every other tensor is kept
    assert set(tensors) - set(full) == {"layer2.0.shortcut.index", "layer3.0.shortcut.index"}
    assert set(full) <= set(tensors)
    tensors = {k: v for k, v in tensors.items() if k in full}
    smaller = [k for k in tensors if tensors[k].shape != full[k].shape]
    for k in tensors:  # never larger; every block's conv1 lost half its filters and conv2 those inputs
        assert all(a <= b for a, b in zip(tensors[k].shape, full[k].shape)), k
    for stage, width in (("layer1", 4), ("layer2", 8), ("layer3", 16)):
        for b in range(3):
            assert tensors[f"{stage}.{b}.conv1.weight"].shape[0] == width // 2
            assert tensors[f"{stage}.{b}.bn1.weight"].shape == (width // 2,)
            assert tensors[f"{stage}.{b}.conv2.weight"].shape[1] == width // 2
    assert len(smaller) >= 9 * 6
    assert sum(t.numel() for t in tensors.values()) < sum(full[k].numel() for k in tensors)

    desc = json.loads(out.with_suffix(".json").read_text())
    assert desc["model"]["name"] == "resnet20" and desc["model"]["options"] == {"width": 0.25}
    assert len(desc["filters_pruned"]["layer1.0.conv1.weight"]) == 2
    assert desc["report"]["layer1.0.conv1"]["out_after"] == 2
    assert desc["parameters"]["after"] < desc["parameters"]["before"]

    # the .json rebuilds the module; with the stored state it computes what the masked final model computes
    model = load_exported(out)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    run_dir = Store(root).run_dir(run_id)
    from prunelab.primitives.filters import FilterMasking
    from prunelab.primitives.masks import Mask
    ref = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0, width=0.25)
    ref.load_state_dict(load_tensors(run_dir / "state" / "final.safetensors")[0])
    [mask_file] = (run_dir / "masks").glob("*.safetensors")
    FilterMasking(ref, Mask.load(mask_file))
    ref.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-4)


def test_export_errors_exit_2(store, tmp_path, capsys):
    root, run_id, dense_id = store
    out = str(tmp_path / "x.safetensors")
    assert main(["export", "0123456789ab", "--results", str(root), "--out", out]) == 2
    assert "unknown run id '0123456789ab'" in capsys.readouterr().err

    s = Store(root)
    s.add_run("notdone000001", "tiny-gst", "tiny-gst", s.get_run(run_id)["spec_json"])   # queued, never run
    assert main(["export", "notdone000001", "--results", str(root), "--out", out]) == 2
    assert "is 'queued', not done" in capsys.readouterr().err

    assert main(["export", dense_id, "--results", str(root), "--out", out]) == 2
    assert "has no filter mask" in capsys.readouterr().err

    assert main(["export", run_id, "--results", str(root), "--out", out, "--variant", "nope"]) == 2
    assert "no mask of variant 'nope'" in capsys.readouterr().err
    assert main(["export", run_id, "--results", str(tmp_path / "none"), "--out", out]) == 2
    assert "no results store" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
