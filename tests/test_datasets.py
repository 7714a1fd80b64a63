"""The cifar100, svhn and imagenet-subset dataset plugins, on tiny synthetic data (no network).

torchvision's CIFAR100 / SVHN classes are replaced by fakes that hold a few synthetic images, so
``download()`` runs its real conversion into uebench's cache layout; the ImageNet subset is built
from a fake ImageFolder tree of small PNGs written with ``torchvision.io.write_png``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torchvision.io import write_png

from uebench.datasets import imagenet_subset
from uebench.datasets.base import Dataset, DataUnavailableError, has_layout, read_layout
from uebench.datasets.cifar100 import Cifar100
from uebench.datasets.imagenet_subset import WNIDS, ImageNetSubset, kept, read_square, select_subset
from uebench.datasets.svhn import Svhn
from uebench.hookspecs import PROJECT
from uebench.registry import Registry

MODULES = ("uebench.datasets.cifar100", "uebench.datasets.svhn", "uebench.datasets.imagenet_subset")
CLASSES = (Cifar100, Svhn, ImageNetSubset)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Only two data roots: ``tmp/data`` (passed as data_dir) and a private user cache."""
    monkeypatch.delenv("UEBENCH_DATA", raising=False)
    monkeypatch.delenv(imagenet_subset.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "data", tmp_path / "xdg" / "uebench"


def _assert_loaded(data, n_train, n_test, shape, num_classes):
    assert data.x_train.dtype == torch.uint8 and data.x_test.dtype == torch.uint8
    assert data.x_train.shape == (n_train, *shape) and data.x_test.shape == (n_test, *shape)
    assert data.y_train.dtype == torch.int64 and data.y_test.dtype == torch.int64
    for y in (data.y_train, data.y_test):
        assert len(y) and 0 <= int(y.min()) and int(y.max()) < num_classes


# --- registration and the registry contract ---------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_each_module_registers_its_dataset_through_the_hook(module):
    import importlib

    mod = importlib.import_module(module)
    assert hasattr(mod.register_datasets, f"{PROJECT}_impl")
    got = []
    mod.register_datasets(got.append)
    assert len(got) == 1 and got[0] in CLASSES
    Registry("dataset", Dataset).add(got[0])  # kebab-case name, Dataset subclass


# --- CIFAR-100 --------------------------------------------------------------------------------


def test_cifar100_names_the_100_fine_labels_in_label_order():
    names = Cifar100.classes
    assert len(names) == 100 and len(set(names)) == 100
    assert list(names) == sorted(names)  # the archive's meta file lists them alphabetically
    assert names[:3] == ("apple", "aquarium_fish", "baby") and names[-4:] == ("willow_tree", "wolf", "woman", "worm")
    assert {"lawn_mower", "maple_tree", "sweet_pepper", "pickup_truck"} <= set(names)


def _fake_cifar100(classes=Cifar100.classes, calls=None, n_train=30, n_test=10):
    class FakeCIFAR100:
        def __init__(self, root, train=True, download=False, **_):
            if calls is not None:
                calls.append((train, download))
            n = n_train if train else n_test
            g = np.random.default_rng(0 if train else 1)
            self.data = g.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [int(t) for t in g.integers(0, 100, n)]  # a list, as torchvision's
            self.classes = list(classes)

    return FakeCIFAR100


def test_cifar100_download_writes_the_layout_and_load_returns_nchw(roots, monkeypatch):
    data_dir, _ = roots
    calls = []
    fake = _fake_cifar100(calls=calls)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", fake)
    data = Cifar100().load(data_dir)
    assert sorted(calls) == [(False, True), (True, True)]
    assert has_layout(data_dir / "cifar100")
    _assert_loaded(data, 30, 10, (3, 32, 32), 100)
    ref = fake(None, train=True)
    assert torch.equal(data.x_train, torch.from_numpy(ref.data).permute(0, 3, 1, 2))
    assert data.y_train.tolist() == ref.targets
    assert data.classes == list(Cifar100.classes) and data.num_classes == 100


def test_cifar100_refuses_a_download_whose_classes_are_ordered_differently(roots, monkeypatch):
    data_dir, _ = roots
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", _fake_cifar100(classes=Cifar100.classes[::-1]))
    with pytest.raises(RuntimeError, match=r"first difference at label 0: 'worm' vs 'apple'"):
        Cifar100().download(data_dir / "cifar100")
    assert not has_layout(data_dir / "cifar100")


def test_cifar100_offline_error_lists_every_folder_looked_at(roots, monkeypatch):
    data_dir, cache = roots

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataUnavailableError) as info:
        Cifar100().load(data_dir)
    msg = str(info.value)
    for folder in (data_dir / "cifar100", cache / "cifar100"):
        assert f"  - {folder}\n" in msg and f"{folder}: OSError: Temporary failure" in msg
    assert "'cifar100' was not found" in msg


# --- SVHN -------------------------------------------------------------------------------------


def _fake_svhn(calls=None):
    class FakeSVHN:
        """torchvision's layout: data N×3×32×32 uint8, labels int64 0–9 (its 10 already mapped to 0)."""

        def __init__(self, root, split="train", download=False, **_):
            if calls is not None:
                calls.append((split, download))
            n = {"train": 20, "test": 7}[split]
            g = np.random.default_rng({"train": 0, "test": 1}[split])
            self.data = g.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            self.data[0, 0], self.data[0, 1], self.data[0, 2] = 10, 20, 30  # a pure colour per channel
            self.data[1] = 0
            self.data[1, :, 3, 5] = 255  # one white pixel at row 3, column 5
            self.labels = (np.arange(n) % 10).astype(np.int64)

    return FakeSVHN


def test_svhn_download_transposes_to_the_hwc_layout_and_loads_back_nchw(roots, monkeypatch):
    data_dir, _ = roots
    calls = []
    fake = _fake_svhn(calls)
    monkeypatch.setattr(torchvision.datasets, "SVHN", fake)
    data = Svhn().load(data_dir)
    assert sorted(calls) == [("test", True), ("train", True)]
    _assert_loaded(data, 20, 7, (3, 32, 32), 10)
    x_hwc, y, xt_hwc, _ = read_layout(data_dir / "svhn")
    assert x_hwc.shape == (20, 32, 32, 3) and xt_hwc.shape == (7, 32, 32, 3)
    assert (x_hwc[0, ..., 0] == 10).all() and (x_hwc[0, ..., 1] == 20).all() and (x_hwc[0, ..., 2] == 30).all()
    assert np.argwhere(x_hwc[1].sum(-1)).tolist() == [[3, 5]]  # row 3, column 5: H and W not swapped
    assert data.x_train[0, :, 7, 9].tolist() == [10, 20, 30]
    assert torch.equal(data.x_train, torch.from_numpy(fake(None, "train").data))
    assert torch.equal(data.x_test, torch.from_numpy(fake(None, "test").data))
    assert y.tolist() == data.y_train.tolist() == [k % 10 for k in range(20)]
    assert data.classes == [str(d) for d in range(10)]


def test_svhn_is_not_flipped_and_says_why():
    assert Svhn.hflip is False
    import inspect

    src = inspect.getsource(Svhn)
    assert "hflip = False\n" in src and "mirrored digit" in src


def test_svhn_rejects_labels_outside_0_to_9(roots, monkeypatch):
    data_dir, _ = roots
    base = _fake_svhn()

    class Raw(base):  # labels 1..10, as in the .mat files before torchvision's mapping
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.labels = self.labels + 1

    monkeypatch.setattr(torchvision.datasets, "SVHN", Raw)
    with pytest.raises(RuntimeError, match=r"labels in 0–9, got 20 in \[1, 10\]"):
        Svhn().download(data_dir / "svhn")


def test_svhn_offline_error_lists_every_folder_looked_at(roots, monkeypatch):
    data_dir, cache = roots

    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(torchvision.datasets, "SVHN", offline)
    with pytest.raises(DataUnavailableError) as info:
        Svhn().load(data_dir)
    msg = str(info.value)
    assert f"  - {data_dir / 'svhn'}\n" in msg and f"  - {cache / 'svhn'}\n" in msg
    assert msg.count("OSError: offline") == 2


# --- ImageNet subset --------------------------------------------------------------------------

EXTRA = ("n01860187", "n15075141")  # ImageNet-1k's classes 100 and 999: must not be picked


def _png(path, rgb, h=6, w=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, h, w).contiguous()
    write_png(img, str(path))


def _fake_imagenet(root, n_train=lambda k: 5, n_val=2, classes=WNIDS + EXTRA, val_classes=None):
    """Solid-colour PNGs: red = class index, green = file number, blue = 1 (train) / 2 (val)."""
    for k, wnid in enumerate(classes):
        for j in range(n_train(k)):
            _png(root / "train" / wnid / f"{wnid}_{j}.png", (k, j, 1), h=6 + j % 3)
    for k, wnid in enumerate(classes if val_classes is None else val_classes):
        for j in range(n_val):
            _png(root / "val" / wnid / f"val_{j}.png", (k, j, 2))
    return root


@pytest.fixture(scope="module")
def imagenet_root(tmp_path_factory):
    """102 classes; class k has 5 + (k % 7) training images (→ 1–3 kept) and 2 validation images."""
    return _fake_imagenet(tmp_path_factory.mktemp("imagenet"), n_train=lambda k: 5 + k % 7)


def test_imagenet_subset_keeps_the_first_20_percent_rounded_up():
    assert [kept(n, 20) for n in (1, 4, 5, 6, 10, 11, 732, 1300)] == [1, 1, 1, 2, 2, 3, 147, 260]


def test_imagenet_subset_class_list_is_imagenet_1k_first_100():
    assert len(WNIDS) == 100 and len(set(WNIDS)) == 100 and list(WNIDS) == sorted(WNIDS)
    assert (WNIDS[0], WNIDS[7], WNIDS[-1]) == ("n01440764", "n01514668", "n01855672")  # tench, cock, goose
    try:
        import timm.data

        synsets = timm.data.ImageNetInfo().label_names()
    except (ImportError, AttributeError):
        pytest.skip("timm's ImageNet synset list is not available")
    assert tuple(synsets[:100]) == WNIDS


def test_imagenet_subset_download_picks_first_100_classes_and_first_20_percent(imagenet_root, roots, monkeypatch):
    data_dir, _ = roots
    monkeypatch.setenv(imagenet_subset.ENV_VAR, str(imagenet_root))
    data = ImageNetSubset().load(data_dir)
    per_class = [kept(5 + k % 7, 20) for k in range(100)]
    _assert_loaded(data, sum(per_class), 200, (3, 64, 64), 100)
    assert has_layout(data_dir / "imagenet-subset")
    assert data.classes == list(WNIDS)
    assert data.y_train.bincount(minlength=100).tolist() == per_class
    assert data.y_test.bincount(minlength=100).tolist() == [2] * 100
    # solid colours survive resizing: red = class index, so no image of the two extra classes came in
    assert torch.equal(data.x_train[:, 0].amin((1, 2)), data.x_train[:, 0].amax((1, 2)))
    assert torch.equal(data.x_train[:, 0, 0, 0].long(), data.y_train)
    assert torch.equal(data.x_test[:, 0, 0, 0].long(), data.y_test)
    assert set(data.x_train[:, 2, 0, 0].tolist()) == {1} and set(data.x_test[:, 2, 0, 0].tolist()) == {2}
    # which files: the first in sorted name order ("_10" sorts before "_2"), as ImageFolder lists them
    green = {k: sorted(data.x_train[data.y_train == k, 1, 0, 0].tolist()) for k in (0, 1, 5, 6)}
    assert green == {0: [0], 1: [0, 1], 5: [0, 1], 6: [0, 1, 10]}
    # the next load reads the cache without touching the ImageNet folder
    monkeypatch.delenv(imagenet_subset.ENV_VAR)
    again = ImageNetSubset().load(data_dir)
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)


def test_imagenet_subset_root_option_wins_over_the_environment(imagenet_root, roots, monkeypatch, tmp_path):
    monkeypatch.setenv(imagenet_subset.ENV_VAR, str(tmp_path / "elsewhere"))
    ds = ImageNetSubset(ImageNetSubset.Options(root=str(imagenet_root)))
    assert ds.source_root() == imagenet_root
    assert ImageNetSubset().options.root is None
    with pytest.raises(DataUnavailableError, match=r"\$UEBENCH_IMAGENET names .*elsewhere, which is not a folder"):
        ImageNetSubset().source_root()


def test_read_square_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    img = torch.zeros(3, 16, 32, dtype=torch.uint8)
    img[:, :, :8] = 255  # white left and right quarters: outside the centred square
    img[:, :, 24:] = 255
    write_png(img, str(tmp_path / "wide.png"))
    out = read_square(tmp_path / "wide.png", 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[:, 2:62].max() == 0  # only the interpolated border columns see any white
    assert out.mean() < 16  # a squashed (non-cropping) resize would keep the white quarters: mean ≈ 128
    gray = torch.full((1, 5, 5), 77, dtype=torch.uint8)  # grayscale files come out as RGB
    write_png(gray, str(tmp_path / "gray.png"))
    assert (read_square(tmp_path / "gray.png", 8) == 77).all()


def test_imagenet_subset_without_a_root_says_how_to_provide_one(roots):
    data_dir, cache = roots
    with pytest.raises(DataUnavailableError, match=r"licence .* Set UEBENCH_IMAGENET=/path/to/imagenet"):
        ImageNetSubset().download(data_dir / "imagenet-subset")
    with pytest.raises(DataUnavailableError) as info:
        ImageNetSubset().load(data_dir)
    msg = str(info.value)
    assert f"  - {data_dir / 'imagenet-subset'}\n" in msg and f"  - {cache / 'imagenet-subset'}\n" in msg
    assert "UEBENCH_IMAGENET" in msg
    assert not (data_dir / "imagenet-subset").exists()


@pytest.mark.parametrize("split", ["train", "val"])
def test_imagenet_subset_missing_split_folder_is_named(tmp_path, split):
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 1, n_val=1, classes=WNIDS[:2])
    import shutil

    shutil.rmtree(root / split)
    with pytest.raises(DataUnavailableError, match=rf"no {split}/ folder in {root}: expected {root / split}/<WordNet id>"):
        select_subset(root)


def test_imagenet_subset_needs_100_classes(tmp_path):
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 1, n_val=1, classes=WNIDS[:99])
    with pytest.raises(DataUnavailableError, match=rf"{root / 'train'} has 99 class folders; .* first 100"):
        select_subset(root)


def test_imagenet_subset_checks_the_classes_are_imagenet_1k_first_100(tmp_path):
    classes = WNIDS[:3] + ("n01491000",) + WNIDS[4:]  # class 3 replaced: not ImageNet-1k
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 1, n_val=1, classes=classes)
    with pytest.raises(DataUnavailableError, match=r"position 3 holds 'n01491000' where ImageNet-1k has 'n01491361'"):
        select_subset(root)


def test_imagenet_subset_val_classes_must_match_train(tmp_path):
    val = WNIDS[:50] + WNIDS[51:] + ("n99999999",)
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 1, n_val=1, classes=WNIDS, val_classes=val)
    with pytest.raises(DataUnavailableError) as info:
        select_subset(root)
    msg = str(info.value)
    assert f"class folders of {root / 'val'} differ from those of {root / 'train'}" in msg
    assert f"1 missing in val ({WNIDS[50]})" in msg and "1 only in val (n99999999)" in msg


def test_imagenet_subset_flat_val_folder_gets_a_hint(tmp_path):
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 1, n_val=0, classes=WNIDS, val_classes=())
    _png(root / "val" / "ILSVRC2012_val_00000001.JPEG", (1, 2, 3))
    with pytest.raises(DataUnavailableError,
                       match=r"100 missing in val \(n01440764, .* 95 more\).*official flat validation layout"):
        select_subset(root)


def test_imagenet_subset_empty_class_folder_is_named(tmp_path):
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 0 if k == 7 else 1, n_val=1, classes=WNIDS)
    (root / "train" / WNIDS[7]).mkdir()
    (root / "train" / WNIDS[7] / "notes.txt").write_text("not an image")
    with pytest.raises(DataUnavailableError, match=rf"{root / 'train' / WNIDS[7]} holds no images"):
        select_subset(root)


def test_imagenet_subset_undecodable_file_is_named(tmp_path, roots):
    data_dir, _ = roots
    root = _fake_imagenet(tmp_path / "in", n_train=lambda k: 1, n_val=1, classes=WNIDS)
    bad = root / "train" / WNIDS[3] / "broken.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataUnavailableError, match=rf"cannot decode {bad}"):
        ImageNetSubset(ImageNetSubset.Options(root=str(root))).download(data_dir / "imagenet-subset")
    assert not has_layout(data_dir / "imagenet-subset")


# --- per-dataset protocol numbers ---------------------------------------------------------


@pytest.mark.parametrize(("dataset", "epochs", "model_steps"),
                         [("cifar10", 60, 10), ("svhn", 30, 10), ("cifar100", 100, 20), ("imagenet-subset", 100, 100)])
def test_the_paper_protocol_takes_each_datasets_own_epochs_and_m(dataset, epochs, model_steps, monkeypatch):
    """Table 1's schedule: epochs 30 SVHN / 60 CIFAR-10 / 100 CIFAR-100 and ImageNet subset; M = 10 /
    20 / 100 — reaching the cell (its training settings and its crafting options, hence its noise key).
    Only CIFAR-10 is on this machine: the others' content digest and size (which prepare reads) are stubbed."""
    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.datasets.base import Dataset

    if dataset != "cifar10":
        monkeypatch.setattr(Dataset, "digest", lambda self, data_dir=None: "not-on-this-machine")
        monkeypatch.setattr(Dataset, "train_count", lambda self, data_dir=None: 1000)
    cell = prepare(CellSpec(attack="errmin-pgd", dataset=dataset, protocol="paper", attack_options={"form": "class"}),
                   RunSettings(device="cpu"))
    assert (cell.protocol.name, cell.protocol.version) == ("paper", 2)
    assert cell.protocol.train_settings("fp32").epochs == epochs
    assert cell.resolved.model_steps == model_steps


def test_the_cpu_protocols_use_one_schedule_for_every_dataset():
    from uebench.protocols import PROTOCOLS

    for name in ("cpu", "cpu-full", "smoke"):
        assert PROTOCOLS[name].for_dataset("svhn") == PROTOCOLS[name] == PROTOCOLS[name].for_dataset("cifar100")
