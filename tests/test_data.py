"""Tests for prunelab.data: format readers, downloads, splits, batching and augmentation.

Format tests write tiny files in the official layouts and check every decoded byte; the real local copy
in shared/data is read once per module (MNIST and CIFAR-10).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import random
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelab.data import (
    LAYOUTS, Augmentation, DataFormatError, Dataset, Split, download_url, extract_tar, extract_zip, list_datasets,
    load_dataset, random_crop, random_crop_flip, random_hflip, read_cifar_bin, read_idx, subsample,
)
from prunelab.errors import ChecksumError, ConfigError, DataNotFoundError, UnknownNameError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------------------
# writers for the official formats (written from the format descriptions, byte by byte)

def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    big = arr.astype(arr.dtype.newbyteorder(">"))
    return struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + big.tobytes()


def write_idx_dataset(d: Path, n_train: int, n_test: int, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    arrays = {
        IDX_NAMES[0]: rng.randint(0, 256, (n_train, 28, 28)).astype(np.uint8),
        IDX_NAMES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        IDX_NAMES[2]: rng.randint(0, 256, (n_test, 28, 28)).astype(np.uint8),
        IDX_NAMES[3]: ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (d / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (d / name).write_bytes(data)
    return arrays


def cifar_record(label_bytes: bytes, img: np.ndarray) -> bytes:
    """One record: label byte(s), then the red plane, green plane, blue plane, each row by row."""
    out = bytearray(label_bytes)
    for c in range(3):
        for r in range(32):
            out += bytes(int(v) for v in img[c, r])
    return bytes(out)


def write_cifar10(d: Path, per_file: int = 3, seed: int = 0):
    rng = np.random.RandomState(seed)
    d.mkdir(parents=True, exist_ok=True)
    xs, ys = {}, {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        imgs = rng.randint(0, 256, (per_file, 3, 32, 32)).astype(np.uint8)
        labels = [(k + j) % 10 for j in range(per_file)]
        (d / name).write_bytes(b"".join(cifar_record(bytes([lab]), im) for lab, im in zip(labels, imgs)))
        xs[name], ys[name] = imgs, labels
    return xs, ys


def write_cifar100(d: Path, n: int = 4, seed: int = 1):
    rng = np.random.RandomState(seed)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("train.bin", "test.bin"):
        imgs = rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
        coarse = [j % 20 for j in range(n)]
        fine = [(37 + 11 * j) % 100 for j in range(n)]
        (d / name).write_bytes(b"".join(cifar_record(bytes([c, f]), im) for c, f, im in zip(coarse, fine, imgs)))
        out[name] = (imgs, coarse, fine)
    return out


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# Tiny-ImageNet: wnids.txt deliberately unsorted (labels follow the sorted order), one greyscale JPEG.
TINY_WNIDS = ("n09999999", "n01443537", "n02124075")


def _solid_jpeg(path: Path, rgb: tuple[int, int, int], grey: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("L", (64, 64), rgb[0]) if grey else Image.new("RGB", (64, 64), rgb)
    img.save(path, format="JPEG", quality=95)


def write_tiny_imagenet(d: Path) -> dict:
    """A 3-class tree in the official layout: 2 train images per class, 3 val images, a test folder.
    Returns the expected train/val colours and labels in load order."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (d / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in TINY_WNIDS + ("n00000001",)))
    order = sorted(TINY_WNIDS)
    train_x, train_y = [], []
    for label, wnid in enumerate(order):
        for k in range(2):
            rgb = (40 + 60 * label, 200 - 80 * k, 30 + 100 * k)
            grey = label == 2 and k == 1
            _solid_jpeg(d / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", rgb, grey=grey)
            (d / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
            train_x.append((rgb[0],) * 3 if grey else rgb)
            train_y.append(label)
    val = {"val_0.JPEG": ("n02124075", (250, 10, 10)), "val_1.JPEG": ("n09999999", (10, 250, 10)),
           "val_2.JPEG": ("n01443537", (10, 10, 250))}
    lines = []
    for name in ("val_2.JPEG", "val_0.JPEG", "val_1.JPEG"):  # annotation order is not load order
        wnid, rgb = val[name]
        _solid_jpeg(d / "val" / "images" / name, rgb)
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    _solid_jpeg(d / "test" / "images" / "test_0.JPEG", (1, 2, 3))
    return {
        "train_x": train_x, "train_y": train_y,
        "val_x": [val[n][1] for n in sorted(val)], "val_y": [order.index(val[n][0]) for n in sorted(val)],
    }


@pytest.fixture
def tiny3(monkeypatch):
    """Let tiny_imagenet load a 3-class tree (the registered entry insists on the official 200 wnids)."""
    from prunelab.data import registry

    info = registry.DATASETS["tiny_imagenet"]
    monkeypatch.setitem(registry.DATASETS, "tiny_imagenet", dataclasses.replace(
        info, num_classes=3, read=registry._file_reader("tiny_imagenet", 3)))


def _solid_images(x: torch.Tensor, colours: list) -> None:
    """Each image is one solid colour (JPEG keeps those to within a couple of levels)."""
    expect = torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, -1, 64, 64)
    assert (x.float() - expect).abs().max().item() <= 3


def small_dataset(n=10, channels=1, hw=4, num_classes=10) -> Dataset:
    x = torch.arange(n * channels * hw * hw, dtype=torch.int64).remainder(256).to(torch.uint8)
    x = x.view(n, channels, hw, hw)
    y = torch.arange(n)  # unique ids, so coverage of an epoch is checkable
    s = Split(x, y)
    return Dataset("toy", train=s, val=None, test=Split(x.clone(), y.clone()), num_classes=num_classes,
                   input_shape=(channels, hw, hw), mean=(0.5,) * channels, std=(0.25,) * channels,
                   augmentation=Augmentation(crop_padding=1, flip=True))


# ---------------------------------------------------------------------------------------------------------
# format readers

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_exact(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
    data = idx_bytes(arr)
    assert data[:4] == b"\x00\x00\x08\x03" and data[4:8] == b"\x00\x00\x00\x02"
    p = tmp_path / ("a.gz" if gz else "a")
    p.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(p)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    assert out[1, 2, 3] == (23 * 7) % 256
    np.testing.assert_array_equal(out, arr)


def test_read_idx_big_endian_int32_and_errors(tmp_path):
    arr = np.array([1, -2, 70000], dtype=np.int32)
    (tmp_path / "i").write_bytes(idx_bytes(arr, code=0x0C))
    out = read_idx(tmp_path / "i")
    assert out.tolist() == [1, -2, 70000] and out.dtype.byteorder in "=<|"
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataFormatError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((4, 2), np.uint8))[:-1])
    with pytest.raises(DataFormatError, match=r"shape \(4, 2\)"):
        read_idx(tmp_path / "short")


def test_read_cifar10_record_layout(tmp_path):
    img = np.zeros((3, 32, 32), np.uint8)
    img[1, 2, 5] = 200  # green, row 2, column 5
    img[2, 31, 31] = 9
    rec = cifar_record(b"\x07", img)
    assert len(rec) == 3073 and rec[1 + 1024 + 2 * 32 + 5] == 200 and rec[-1] == 9
    (tmp_path / "b.bin").write_bytes(rec + cifar_record(b"\x02", 255 - img))
    x, y = read_cifar_bin(tmp_path / "b.bin")
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == [7, 2] and y.dtype == np.int64
    assert x[0, 1, 2, 5] == 200 and x[0, 2, 31, 31] == 9 and x[0].sum() == 209
    np.testing.assert_array_equal(x[1], 255 - img)
    (tmp_path / "odd.bin").write_bytes(rec[:-1])
    with pytest.raises(DataFormatError, match="3073-byte"):
        read_cifar_bin(tmp_path / "odd.bin")


def test_read_cifar100_uses_fine_label(tmp_path):
    written = write_cifar100(tmp_path)
    x, y = read_cifar_bin(tmp_path / "train.bin", label_bytes=2)
    imgs, coarse, fine = written["train.bin"]
    assert y.tolist() == fine
    _, yc = read_cifar_bin(tmp_path / "train.bin", label_bytes=2, label_index=0)
    assert yc.tolist() == coarse
    np.testing.assert_array_equal(x, imgs)


# ---------------------------------------------------------------------------------------------------------
# load_dataset on synthetic roots

def test_load_cifar10_layouts(tmp_path):
    xs, ys = write_cifar10(tmp_path / "a" / "cifar10")
    write_cifar10(tmp_path / "b" / "cifar10" / "cifar-10-batches-bin")
    for root in (tmp_path / "a", tmp_path / "b"):
        ds = load_dataset("cifar10", root=root, download=False)
        assert len(ds.train) == 15 and len(ds.test) == 3 and ds.val is None
        expect = np.concatenate([xs[f"data_batch_{i}.bin"] for i in range(1, 6)])
        assert ds.train.y.tolist() == sum((ys[f"data_batch_{i}.bin"] for i in range(1, 6)), [])
        assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
        if root.name == "a":
            np.testing.assert_array_equal(ds.train.x.numpy(), expect)
            np.testing.assert_array_equal(ds.test.x.numpy(), xs["test_batch.bin"])
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and ds.classes[0] == "airplane"


def test_load_cifar100_fine_labels(tmp_path):
    written = write_cifar100(tmp_path / "cifar100" / "cifar-100-binary", n=5)
    ds = load_dataset("cifar100", root=tmp_path, download=False)
    assert ds.num_classes == 100 and len(ds.classes) == 100 and len(set(ds.classes)) == 100
    assert ds.train.y.tolist() == written["train.bin"][2]
    np.testing.assert_array_equal(ds.test.x.numpy(), written["test.bin"][0])


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_datasets(tmp_path, gz):
    arrays = write_idx_dataset(tmp_path / "fashion_mnist", 20, 6, gz=gz)
    ds = load_dataset("fashion_mnist", root=tmp_path, download=False)
    assert ds.train.x.shape == (20, 1, 28, 28) and ds.test.x.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(ds.train.x[:, 0].numpy(), arrays[IDX_NAMES[0]])
    assert ds.test.y.tolist() == arrays[IDX_NAMES[3]].tolist()
    assert ds.mean == (0.2860,) and ds.std == (0.3530,) and ds.classes[-1] == "Ankle boot"


def test_test_size_keeps_a_seeded_class_balanced_subset(tmp_path):
    arrays = write_idx_dataset(tmp_path / "mnist", 20, 40, gz=False)
    full = load_dataset("mnist", root=tmp_path, download=False)
    sub = load_dataset("mnist", root=tmp_path, download=False, test_size=20, test_seed=3)
    assert sorted(sub.test.y.tolist()) == sorted(list(range(10)) * 2)       # 2 per class
    # the same images as subsampling the full test split (the draw the old example scripts used)
    ref = subsample(full.test, 20, seed=3, num_classes=10)
    assert torch.equal(sub.test.x, ref.x) and torch.equal(sub.test.y, ref.y)
    assert not torch.equal(load_dataset("mnist", root=tmp_path, download=False, test_size=20, test_seed=4).test.x,
                           sub.test.x)
    assert torch.equal(sub.train.x, full.train.x)                             # train untouched
    with pytest.raises(ConfigError, match="test_size"):
        load_dataset("mnist", root=tmp_path, download=False, test_size=41)


def test_missing_files_error_names_files(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("mnist", root=tmp_path, download=False)
    msg = str(e.value)
    for name in IDX_NAMES:
        assert name in msg
    assert "'mnist'" in msg and str(tmp_path / "mnist") in msg and "ossci-datasets" in msg
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("cifar10", root=tmp_path, download=False)
    msg = str(e.value)
    assert "data_batch_5.bin" in msg and "test_batch.bin" in msg and "cifar-10-binary.tar.gz" in msg
    assert str(tmp_path / "cifar10" / "cifar-10-batches-bin") in msg


def test_unknown_names():
    assert list_datasets() == ["cifar10", "cifar100", "fashion_mnist", "mnist", "mnist1d", "tiny_imagenet"]
    with pytest.raises(UnknownNameError) as e:
        load_dataset("cifar-10", root="/nonexistent")
    assert "cifar10" in str(e.value) and "mnist1d" in str(e.value) and "'cifar-10'" in str(e.value)
    with pytest.raises(UnknownNameError, match="divide255"):
        load_dataset("mnist", root="/nonexistent", normalize="zscore")
    with pytest.raises(ConfigError, match="no standard augmentation"):
        load_dataset("mnist", root="/nonexistent", augment=True)


# ---------------------------------------------------------------------------------------------------------
# downloads (file:// URLs, no network)

def test_download_url_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello prunelab" * 1000)
    good = md5(src.read_bytes())
    out = download_url(src.as_uri(), tmp_path / "dl" / "f.bin", md5=good, progress=False)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(ChecksumError) as e:
        download_url(src.as_uri(), tmp_path / "dl2" / "g.bin", md5="0" * 32, progress=False)
    msg = str(e.value)
    assert "g.bin" in msg and "0" * 32 in msg and good in msg
    assert list((tmp_path / "dl2").iterdir()) == []  # neither the file nor a partial one


def test_download_url_injected_opener(tmp_path):
    payload = b"x" * 3000

    class Resp(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    calls = []

    def opener(url, timeout):
        calls.append(url)
        return Resp(payload)

    p = download_url("https://example.invalid/a", tmp_path / "a", sha256=hashlib.sha256(payload).hexdigest(),
                      urlopen=opener, progress=False)
    assert p.read_bytes() == payload and calls == ["https://example.invalid/a"]


def _cifar10_archive(tmp_path: Path) -> tuple[Path, dict]:
    staging = tmp_path / "staging"
    xs, ys = write_cifar10(staging / "cifar-10-batches-bin", per_file=2)
    members = {f"cifar-10-batches-bin/{p.name}": p.read_bytes() for p in sorted(staging.rglob("*.bin"))}
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(tar_gz(members))
    return archive, ys


def _patch_layout(monkeypatch, name: str, url: str, checksum: str):
    """Point every resource of ``name`` at ``url`` so that no test can reach the network."""
    layout = LAYOUTS[name]
    res = tuple(dataclasses.replace(r, urls=(url,), md5=checksum) for r in layout.resources)
    monkeypatch.setitem(LAYOUTS, name, dataclasses.replace(layout, resources=res))


def test_download_and_extract_cifar10(tmp_path, monkeypatch):
    archive, ys = _cifar10_archive(tmp_path)
    _patch_layout(monkeypatch, "cifar10", archive.as_uri(), md5(archive.read_bytes()))
    root = tmp_path / "root"
    ds = load_dataset("cifar10", root=root, download=True, progress=False)
    assert len(ds.train) == 10 and ds.test.y.tolist() == ys["test_batch.bin"]
    assert (root / "cifar10" / "cifar-10-batches-bin" / "data_batch_3.bin").is_file()
    assert not (root / "cifar10" / "cifar-10-binary.tar.gz").exists()  # archive removed after extraction
    assert not [p for p in (root / "cifar10").iterdir() if p.name.startswith(".")]  # no staging leftovers
    load_dataset("cifar10", root=root, download=False)  # now found locally


def test_download_bad_checksum_leaves_nothing(tmp_path, monkeypatch):
    archive, _ = _cifar10_archive(tmp_path)
    _patch_layout(monkeypatch, "cifar10", archive.as_uri(), "f" * 32)
    root = tmp_path / "root"
    with pytest.raises(ChecksumError) as e:
        load_dataset("cifar10", root=root, progress=False)
    assert "cifar-10-binary.tar.gz" in str(e.value) and "f" * 32 in str(e.value)
    assert md5(archive.read_bytes()) in str(e.value)
    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_download_failure_is_data_not_found(tmp_path, monkeypatch):
    _patch_layout(monkeypatch, "mnist", (tmp_path / "nope.gz").as_uri(), "0" * 32)
    with pytest.raises(DataNotFoundError, match="Download failed") as e:
        load_dataset("mnist", root=tmp_path / "root", progress=False)
    assert "train-images-idx3-ubyte" in str(e.value)


def test_download_idx_files(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    arrays = write_idx_dataset(src, 10, 4, gz=True, seed=3)
    layout = LAYOUTS["mnist"]
    resources = tuple(
        dataclasses.replace(r, urls=((src / r.filename).as_uri(),), md5=md5((src / r.filename).read_bytes()))
        for r in layout.resources
    )
    monkeypatch.setitem(LAYOUTS, "mnist", dataclasses.replace(layout, resources=resources))
    ds = load_dataset("mnist", root=tmp_path / "root", progress=False)
    np.testing.assert_array_equal(ds.test.x[:, 0].numpy(), arrays[IDX_NAMES[2]])
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == sorted(n + ".gz" for n in IDX_NAMES)


def test_extract_tar_rejects_path_traversal(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(tar_gz({"ok.bin": b"1", "../evil.bin": b"2"}))
    dest = tmp_path / "out"
    with pytest.raises(DataFormatError, match="unsafe"):
        extract_tar(bad, dest)
    assert not (tmp_path / "evil.bin").exists()
    assert [p for p in dest.rglob("*")] == []


# ---------------------------------------------------------------------------------------------------------
# augmentation

def test_crop_is_hand_computed_shift():
    img = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    x = img.expand(64, 1, 3, 3).contiguous()
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    # pad by 1 -> 5x5; offset (dy, dx) in 0..2; (1, 1) is the identity
    padded = torch.zeros(5, 5, dtype=torch.uint8)
    padded[1:4, 1:4] = img[0, 0]
    offs = torch.randint(0, 3, (2, 64), generator=torch.Generator().manual_seed(0))
    for i in range(64):
        dy, dx = int(offs[0, i]), int(offs[1, i])
        assert torch.equal(out[i, 0], padded[dy:dy + 3, dx:dx + 3])
    assert torch.equal(
        random_crop(img, 1, _gen_with_offsets(0, 0))[0, 0],
        torch.tensor([[0, 0, 0], [0, 1, 2], [0, 4, 5]], dtype=torch.uint8),
    )
    assert len({tuple(o.flatten().tolist()) for o in out}) == 9  # every offset occurs


def _gen_with_offsets(dy: int, dx: int) -> torch.Generator:
    """A generator whose first crop draw for a batch of 1 with padding 1 is (dy, dx)."""
    for seed in range(1000):
        o = torch.randint(0, 3, (2, 1), generator=torch.Generator().manual_seed(seed))
        if o[0, 0] == dy and o[1, 0] == dx:
            return torch.Generator().manual_seed(seed)
    raise AssertionError("no seed found")


def test_flip_exact_and_crop_flip_composition():
    x = torch.randint(0, 256, (32, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = random_hflip(x, torch.Generator().manual_seed(2))
    coin = torch.randint(0, 2, (32,), generator=torch.Generator().manual_seed(2)).bool()
    assert 0 < coin.sum() < 32
    for i in range(32):
        assert torch.equal(out[i], x[i].flip(-1) if coin[i] else x[i])
    both = random_crop_flip(x, 2, True, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    offs = torch.randint(0, 5, (2, 32), generator=g)
    coin = torch.randint(0, 2, (32,), generator=g).bool()
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(32):
        crop = padded[i, :, offs[0, i]:offs[0, i] + 5, offs[1, i]:offs[1, i] + 5]
        assert torch.equal(both[i], crop.flip(-1) if coin[i] else crop)


def test_same_seed_same_batches_and_epoch_coverage():
    ds = small_dataset(n=23)
    def epoch(seed):
        return list(ds.batches("train", 5, shuffle=True, generator=torch.Generator().manual_seed(seed)))
    a, b, c = epoch(7), epoch(7), epoch(8)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
    seen = torch.cat([y for _, y in a])
    assert sorted(seen.tolist()) == list(range(23)) and seen.tolist() != list(range(23))
    assert [len(y) for _, y in a] == [5, 5, 5, 5, 3] and ds.num_batches("train", 5) == 5
    dropped = list(ds.batches("train", 5, shuffle=True, drop_last=True, generator=torch.Generator()))
    assert len(dropped) == 4 == ds.num_batches("train", 5, drop_last=True)


def test_normalisation_and_default_augment_scope():
    ds = small_dataset(n=6)
    (x, y), = ds.batches("test", 6)  # augment=None: not applied to test
    expect = (ds.test.x.double() / 255 - 0.5) / 0.25
    assert x.dtype == torch.float32 and torch.allclose(x.double(), expect, atol=1e-5)
    (xt, _), = ds.batches("train", 6, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(xt.double(), expect, atol=1e-5)  # train batches are augmented
    (xn, _), = ds.batches("train", 6, augment=False)
    assert torch.allclose(xn.double(), expect, atol=1e-5)
    assert ds.train.x.dtype == torch.uint8  # storage untouched


def test_channels_last():
    ds = small_dataset(n=4, channels=3)
    (x, _), = ds.batches("test", 4, channels_last=True)
    (ref, _), = ds.batches("test", 4)
    assert x.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, ref)


# ---------------------------------------------------------------------------------------------------------
# splits

def test_val_split_seeded_disjoint_balanced(tmp_path):
    write_cifar10(tmp_path / "cifar10", per_file=20)  # 100 train images, 10 per class
    kw = dict(root=tmp_path, download=False)
    a = load_dataset("cifar10", val_size=30, val_seed=0, balanced_val=True, **kw)
    b = load_dataset("cifar10", val_size=30, val_seed=0, balanced_val=True, **kw)
    c = load_dataset("cifar10", val_size=30, val_seed=1, balanced_val=True, **kw)
    full = load_dataset("cifar10", **kw)
    assert torch.equal(a.val.x, b.val.x) and not torch.equal(a.val.x, c.val.x)
    assert a.val.class_counts(10) == [3] * 10 and a.train.class_counts(10) == [7] * 10
    # disjoint and complete: every original image is in exactly one of train / val
    rows = lambda s: {bytes(r) for r in s.x.reshape(len(s), -1).numpy()}
    assert rows(a.train).isdisjoint(rows(a.val)) and rows(a.train) | rows(a.val) == rows(full.train)
    unb = load_dataset("cifar10", val_size=30, val_seed=0, **kw)
    assert len(unb.val) == 30 and len(unb.train) == 70
    with pytest.raises(ConfigError, match="multiple of the 10 classes"):
        load_dataset("cifar10", val_size=25, balanced_val=True, **kw)
    with pytest.raises(ConfigError, match="val_size=-1"):
        load_dataset("cifar10", val_size=-1, **kw)
    with pytest.raises(ConfigError, match="val_size=100"):
        load_dataset("cifar10", val_size=100, **kw)
    sub = load_dataset("cifar10", val_size=30, balanced_val=True, train_size=20, train_seed=5, **kw)
    assert sub.train.class_counts(10) == [2] * 10 and rows(sub.train) <= rows(a.train)


def test_subset_and_subsample():
    s = Split(torch.arange(40).view(20, 2), torch.arange(20) % 4)
    t = s.subset([3, 1])
    assert t.x.tolist() == [[6, 7], [2, 3]] and t.y.tolist() == [3, 1]
    sub = subsample(s, 8, seed=0, balanced=True, num_classes=4)
    assert sub.class_counts(4) == [2, 2, 2, 2]
    assert torch.equal(sub.y, subsample(s, 8, seed=0, balanced=True, num_classes=4).y)


# ---------------------------------------------------------------------------------------------------------
# normalisation options, MNIST-1D, real local data

def test_normalize_options(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    d = load_dataset("cifar10", root=tmp_path, download=False, normalize="divide255")
    (x, _), = d.batches("test", 3)
    assert torch.allclose(x, d.test.x.float() / 255) and d.mean == (0.0,) and d.std == (1.0,)
    cs = ((125.3 / 255, 123.0 / 255, 113.9 / 255), (63.0 / 255, 62.1 / 255, 66.7 / 255))
    d = load_dataset("cifar10", root=tmp_path, download=False, normalize=cs)
    (x, _), = d.batches("test", 3)
    m, s = torch.tensor(cs[0]).view(1, 3, 1, 1), torch.tensor(cs[1]).view(1, 3, 1, 1)
    assert torch.allclose(x, (d.test.x.float() / 255 - m) / s, atol=1e-5)
    d = load_dataset("cifar10", root=tmp_path, download=False)
    assert d.mean == (0.4914, 0.4822, 0.4465) and d.std == (0.2470, 0.2435, 0.2616)
    assert d.augmentation == Augmentation(crop_padding=4, flip=True)
    assert load_dataset("cifar10", root=tmp_path, download=False, augment=False).augmentation.enabled is False


def test_mnist1d_shape_and_global_rng_untouched():
    random.seed(123)
    np.random.seed(123)
    py_before, np_before = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    ds = load_dataset("mnist1d", val_size=400, balanced_val=True)
    assert (random.random(), np.random.rand()) == (py_before, np_before)
    assert ds.train.x.shape == (3600, 40) and ds.val.x.shape == (400, 40) and ds.test.x.shape == (1000, 40)
    assert ds.train.x.dtype == torch.float32 and ds.input_shape == (40,)
    (x, _), = ds.batches("test", 1000)
    assert torch.equal(x, ds.test.x) and x.data_ptr() != ds.test.x.data_ptr()
    with pytest.raises(ConfigError):
        load_dataset("mnist1d", normalize="divide255")


@pytest.fixture(scope="module")
def mnist():
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"local MNIST copy not at {SHARED}")
    return load_dataset("mnist", root=SHARED, download=False)


def test_real_mnist(mnist):
    assert len(mnist.train) == 60000 and len(mnist.test) == 10000
    assert mnist.train.y[:5].tolist() == [5, 0, 4, 1, 9] and mnist.test.y[:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist.train.class_counts(10)[:3] == [5923, 6742, 5958]
    # pixel statistics from a histogram (exact, and no 60000x784 float copy)
    hist = torch.bincount(mnist.train.x.flatten(), minlength=256).double()
    v = torch.arange(256, dtype=torch.float64) / 255
    mean = (hist * v).sum() / hist.sum()
    std = ((hist * (v - mean) ** 2).sum() / hist.sum()).sqrt()
    assert abs(mean.item() - 0.1307) < 5e-5 and abs(std.item() - 0.3081) < 5e-5
    xb, yb = next(mnist.batches("train", 1000))
    assert torch.equal(yb, mnist.train.y[:1000])
    assert torch.allclose(xb.double(), (mnist.train.x[:1000].double() / 255 - 0.1307) / 0.3081, atol=1e-5)


def test_real_cifar10():
    if not (SHARED / "cifar10").is_dir():
        pytest.skip(f"local CIFAR-10 copy not at {SHARED}")
    ds = load_dataset("cifar10", root=SHARED, download=False, val_size=5000, balanced_val=True, val_seed=0)
    assert len(ds.train) + len(ds.val) == 50000 and len(ds.test) == 10000
    counts = np.array(ds.train.class_counts(10)) + np.array(ds.val.class_counts(10))
    assert counts.tolist() == [5000] * 10 and ds.val.class_counts(10) == [500] * 10
    assert ds.test.class_counts(10) == [1000] * 10


def test_mnist1d_disk_cache_roundtrip_and_damage(tmp_path):
    from prunelab.data.mnist1d import generate_mnist1d

    def arrays(raw):
        return raw.x_train, raw.y_train, raw.x_test, raw.y_test

    fresh = arrays(generate_mnist1d(cache_dir=tmp_path))
    path = tmp_path / "mnist1d_seed42.safetensors"
    assert path.is_file()
    cached = arrays(generate_mnist1d(cache_dir=tmp_path))
    for a, b in zip(fresh, cached):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    assert fresh[0].shape == (4000, 40) and fresh[3].shape == (1000,)
    path.write_bytes(path.read_bytes()[:100])  # truncated: regenerated, never trusted
    again = arrays(generate_mnist1d(cache_dir=tmp_path))
    assert all(np.array_equal(a, b) for a, b in zip(fresh, again))


def test_device_subset_script_writes_the_train_size_subset(tmp_path):
    """scripts/device/cifar10_subset.py: official-format files holding exactly dataset.train_size's images."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "cifar10_subset", Path(__file__).resolve().parents[1] / "scripts/device/cifar10_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    write_cifar10(tmp_path / "src" / "cifar10", per_file=10)
    mod.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--train", "20"])
    small = load_dataset("cifar10", root=tmp_path / "out", download=False, progress=False)
    ref = load_dataset("cifar10", root=tmp_path / "src", download=False, progress=False, train_size=20)
    assert torch.equal(small.train.x, ref.train.x) and torch.equal(small.train.y, ref.train.y)
    assert torch.equal(small.test.x, ref.test.x) and len(small.train) == 20


# ---------------------------------------------------------------------------------------------------------
# Tiny-ImageNet (official zip layout, decoded with Pillow, cached as safetensors)

def _tiny_tensors(ds):
    return ds.train.x, ds.train.y, ds.test.x, ds.test.y


def test_tiny_imagenet_official_layout(tmp_path, tiny3):
    expect = write_tiny_imagenet(tmp_path / "tiny_imagenet" / "tiny-imagenet-200")
    ds = load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False)
    assert ds.train.x.shape == (6, 3, 64, 64) and ds.test.x.shape == (3, 3, 64, 64) and ds.val is None
    assert ds.train.x.dtype == torch.uint8 and ds.train.y.dtype == torch.int64
    assert ds.classes == tuple(sorted(TINY_WNIDS))            # label = position in sorted wnids.txt
    assert ds.train.y.tolist() == expect["train_y"] == [0, 0, 1, 1, 2, 2]
    assert ds.test.y.tolist() == expect["val_y"] == [1, 2, 0]  # val_0, val_1, val_2 from the annotations
    _solid_images(ds.train.x, expect["train_x"])              # includes a greyscale JPEG -> RGB
    _solid_images(ds.test.x, expect["val_x"])
    assert ds.input_shape == (3, 64, 64) and ds.mean == (0.485, 0.456, 0.406) and ds.std == (0.229, 0.224, 0.225)
    assert ds.augmentation == Augmentation(crop_padding=4, flip=True)


def test_tiny_imagenet_registered_entry_wants_200_wnids(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    with pytest.raises(DataFormatError, match="expected 200 wnids, found 3"):
        load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False)


def test_tiny_imagenet_cache_reused_identical_and_damage_regenerated(tmp_path, tiny3, monkeypatch):
    from prunelab.data import tiny_imagenet as tin

    d = tmp_path / "tiny_imagenet"
    write_tiny_imagenet(d)
    first = _tiny_tensors(load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False))
    cache = d / tin.CACHE_NAME
    assert cache.is_file()

    real_decode = tin._decode
    calls = []

    def counting(*a, **k):
        calls.append(1)
        return real_decode(*a, **k)

    monkeypatch.setattr(tin, "_decode", counting)
    second = _tiny_tensors(load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False))
    assert calls == []                                             # served from the cache
    assert all(torch.equal(a, b) for a, b in zip(first, second))

    cache.write_bytes(cache.read_bytes()[:200])                    # truncated: regenerated, never trusted
    third = _tiny_tensors(load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False))
    assert len(calls) == 2 and all(torch.equal(a, b) for a, b in zip(first, third))
    calls.clear()
    load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False)
    assert calls == []                                             # the rewritten cache is good again

    _solid_jpeg(d / "train" / "n01443537" / "images" / "n01443537_2.JPEG", (5, 6, 7))   # the files changed
    ds = load_dataset("tiny_imagenet", root=tmp_path, download=False, progress=False)
    assert len(calls) == 2 and len(ds.train) == 7 and ds.train.y.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp files left by the atomic write


def test_tiny_imagenet_missing_files(tmp_path, tiny3):
    d = tmp_path / "tiny_imagenet" / "tiny-imagenet-200"
    write_tiny_imagenet(d)
    (d / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataNotFoundError) as e:
        load_dataset("tiny_imagenet", root=tmp_path, download=False)
    msg = str(e.value)
    assert "'tiny_imagenet'" in msg and "val/val_annotations.txt" in msg and "wnids.txt" in msg
    assert "tiny-imagenet-200.zip" in msg and "90528d7ca1a48142e341f4ef8d21d0de" in msg
    assert str(d) in msg and "download=True" in msg

    d2 = tmp_path / "b" / "tiny-imagenet-200"
    write_tiny_imagenet(d2)
    (d2 / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DataFormatError, match="val_1.JPEG"):
        load_dataset("tiny_imagenet", root=tmp_path / "b", download=False, progress=False)
    for p in (d2 / "train" / "n02124075" / "images").iterdir():
        p.unlink()
    with pytest.raises(DataFormatError, match="no training images for class n02124075"):
        load_dataset("tiny_imagenet", root=tmp_path / "b", download=False, progress=False)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_tiny_imagenet_download_zip(tmp_path, tiny3, monkeypatch):
    staging = tmp_path / "staging"
    expect = write_tiny_imagenet(staging / "tiny-imagenet-200")
    archive = _zip(tmp_path / "tiny-imagenet-200.zip", {
        p.relative_to(staging).as_posix(): p.read_bytes() for p in sorted(staging.rglob("*")) if p.is_file()})
    _patch_layout(monkeypatch, "tiny_imagenet", archive.as_uri(), md5(archive.read_bytes()))
    root = tmp_path / "root"
    ds = load_dataset("tiny_imagenet", root=root, download=True, progress=False)
    assert ds.test.y.tolist() == expect["val_y"] and len(ds.train) == 6
    top = root / "tiny_imagenet"
    assert (top / "tiny-imagenet-200" / "wnids.txt").is_file()
    assert (top / "tiny-imagenet-200" / "test" / "images" / "test_0.JPEG").is_file()
    assert not (top / "tiny-imagenet-200.zip").exists()           # archive removed after extraction
    assert not [p for p in top.iterdir() if p.name.startswith(".")]
    again = load_dataset("tiny_imagenet", root=root, download=False, progress=False)
    assert torch.equal(again.train.x, ds.train.x)


@pytest.mark.parametrize("evil", ["../evil.bin", "/tmp/prunelab-abs-evil.bin", "a/../../evil.bin", "link"])
def test_extract_zip_rejects_path_traversal(tmp_path, evil):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("ok.bin", b"1")
        if evil == "link":  # a symlink member pointing out of the tree
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "../outside")
        else:
            zf.writestr(zipfile.ZipInfo(evil), b"2")  # ZipInfo keeps the name as given
    dest = tmp_path / "out"
    with pytest.raises(DataFormatError, match="unsafe"):
        extract_zip(bad, dest)
    assert not (tmp_path / "evil.bin").exists() and not Path("/tmp/prunelab-abs-evil.bin").exists()
    assert [p for p in dest.rglob("*")] == []


def test_tiny_imagenet_unsafe_download_is_data_not_found(tmp_path, tiny3, monkeypatch):
    archive = _zip(tmp_path / "tiny-imagenet-200.zip", {"tiny-imagenet-200/wnids.txt": b"n0\n"})
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(zipfile.ZipInfo("../evil.txt"), b"x")
    _patch_layout(monkeypatch, "tiny_imagenet", archive.as_uri(), md5(archive.read_bytes()))
    with pytest.raises(DataNotFoundError, match="unsafe archive member"):
        load_dataset("tiny_imagenet", root=tmp_path / "root", progress=False)
    assert not (tmp_path / "root" / "evil.txt").exists()
    assert [p for p in (tmp_path / "root").rglob("*") if p.is_file()] == []
