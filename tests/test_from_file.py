"""``from-file``: noise made by other tools (.pt, .npy/.npz, a folder of images) read, checked
against the protocol's training set, and refused with a clear message when it does not fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torchvision.io import write_png

from conftest import make_ctx, synthetic_batch
from uebench.attacks import from_file
from uebench.attacks.base import CraftContext
from uebench.attacks.from_file import FromFile
from uebench.noise import Noise, save_noise
from uebench.options import OptionError, build_options, describe_options
from uebench.poison import release
from uebench.protocols import get_protocol

EPS = 8 / 255
SIZE = 8  # tiny images: every test runs in milliseconds


def ctx_for(n_per_class=2, num_classes=10, eps=EPS, x=None, y=None, train_index=None, size=SIZE):
    """A CraftContext over synthetic uint8 images (no model is ever built by from-file)."""
    if x is None:
        x, y = synthetic_batch(n_per_class, num_classes, size=size)
    ctx = CraftContext(x=x, y=y, num_classes=num_classes, eps=eps, seed=0, device=torch.device("cpu"), precision="fp32",
                       channels_last=False, protocol=get_protocol("smoke"),
                       build_model=lambda name: pytest.fail("from-file must not build a model"),
                       generator=torch.Generator().manual_seed(0))
    if train_index is not None:
        ctx.train_index = train_index
    return ctx


def attack(path, **opts) -> FromFile:
    return FromFile(build_options(FromFile.Options, {"path": str(path), **opts}, "attack 'from-file'"))


def random_delta(rows, shape, eps=EPS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((rows, *shape), generator=g) * 2 - 1) * eps


def poison_images(x, levels=8, seed=0):
    """Poisoned uint8 images: x plus integer noise in [-levels, levels] grey levels, clamped."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randint(-levels, levels + 1, x.shape, generator=g, dtype=torch.int16)
    return (x.to(torch.int16) + d).clamp(0, 255).to(torch.uint8)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


# --- the three formats round-trip --------------------------------------------------------------


def test_pt_samplewise_is_read_as_stored(tmp_path):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y), ctx.x.shape[1:])
    torch.save(delta, tmp_path / "perturbation.pt")
    noise = attack(tmp_path / "perturbation.pt").craft(ctx)
    assert isinstance(noise, Noise) and noise.form == "sample"
    assert noise.delta.dtype == torch.float32 and torch.equal(noise.delta, delta)
    assert noise.eps == pytest.approx(EPS)
    assert noise.meta["format"] == "pt" and noise.meta["content"] == "delta" and noise.meta["mapping"] == "positional"
    assert noise.meta["path"] == str((tmp_path / "perturbation.pt").resolve())


def test_pt_classwise_is_looked_up_by_label(tmp_path):
    ctx = ctx_for()
    delta = random_delta(ctx.num_classes, ctx.x.shape[1:])
    torch.save(delta, tmp_path / "perturbation.pt")
    noise = attack(tmp_path / "perturbation.pt").craft(ctx)
    assert noise.form == "class" and torch.equal(noise.delta, delta)
    index = torch.arange(len(ctx.y))
    assert torch.equal(noise.for_batch(index, ctx.y), delta[ctx.y])


def test_pt_dict_under_a_usual_key_a_named_key_and_uebench_own_cache_file(tmp_path):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y), ctx.x.shape[1:])
    torch.save({"perturbation": delta, "epoch": 3}, tmp_path / "usual.pt")
    assert torch.equal(attack(tmp_path / "usual.pt").craft(ctx).delta, delta)
    other = random_delta(len(ctx.y), ctx.x.shape[1:], seed=1)
    torch.save({"a": delta, "b": other}, tmp_path / "two.pt")
    with pytest.raises(OptionError, match=r"holds 2 tensors .*'a'.*'b'.*-o key=NAME"):
        attack(tmp_path / "two.pt").craft(ctx)
    noise = attack(tmp_path / "two.pt", key="b").craft(ctx)
    assert torch.equal(noise.delta, other) and noise.meta["key"] == "b"
    with pytest.raises(OptionError, match=r"no tensor 'c'"):
        attack(tmp_path / "two.pt", key="c").craft(ctx)
    save_noise(Noise(delta, "sample", EPS, {"attack": "x"}), tmp_path / "cached.pt")
    assert torch.equal(attack(tmp_path / "cached.pt").craft(ctx).delta, delta)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_npy_float_delta_in_either_layout(tmp_path, layout, dtype):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y), ctx.x.shape[1:]).numpy().astype(dtype)
    stored = delta if layout == "NCHW" else delta.transpose(0, 2, 3, 1)
    np.save(tmp_path / "delta.npy", stored)
    noise = attack(tmp_path / "delta.npy").craft(ctx)
    assert noise.meta["layout"] == layout and noise.meta["format"] == "npy"
    expect = torch.from_numpy(delta.astype(np.float32)).clamp(-EPS, EPS)
    assert noise.delta.dtype == torch.float32 and torch.equal(noise.delta, expect)
    assert noise.delta.abs().max().item() <= EPS + 1e-6


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_npy_uint8_images_give_delta_and_release_them_bit_for_bit(tmp_path, layout):
    ctx = ctx_for()
    poisoned = poison_images(ctx.x)
    np.save(tmp_path / "poisoned.npy", (nhwc(poisoned) if layout == "NHWC" else poisoned).numpy())
    noise = attack(tmp_path / "poisoned.npy").craft(ctx)
    assert noise.form == "sample" and noise.meta["content"] == "images" and noise.meta["layout"] == layout
    assert torch.allclose(noise.delta * 255, poisoned.float() - ctx.x.float(), atol=1e-4)
    assert torch.equal(release(ctx.x, ctx.y, noise), poisoned)


def test_npz_single_array_or_named_array(tmp_path):
    ctx = ctx_for()
    poisoned = poison_images(ctx.x)
    delta = random_delta(len(ctx.y), ctx.x.shape[1:])
    np.savez(tmp_path / "one.npz", whatever=nhwc(poisoned).numpy())
    noise = attack(tmp_path / "one.npz").craft(ctx)
    assert noise.meta["format"] == "npz" and noise.meta["key"] == "whatever"
    assert torch.equal(release(ctx.x, ctx.y, noise), poisoned)
    np.savez(tmp_path / "two.npz", x_train=nhwc(poisoned).numpy(), d=delta.numpy(), y=ctx.y.numpy())
    with pytest.raises(OptionError, match=r"holds 3 arrays.*'x_train'.*-o key=NAME"):
        attack(tmp_path / "two.npz").craft(ctx)
    assert torch.equal(attack(tmp_path / "two.npz", key="d").craft(ctx).delta, delta)
    assert torch.equal(release(ctx.x, ctx.y, attack(tmp_path / "two.npz", key="x_train").craft(ctx)), poisoned)
    with pytest.raises(OptionError, match=r"no array 'nope'; it holds x_train, d, y"):
        attack(tmp_path / "two.npz", key="nope").craft(ctx)


def test_png_folder_sorted_by_the_number_in_each_name(tmp_path):
    ctx = ctx_for(n_per_class=2, num_classes=3)
    poisoned = poison_images(ctx.x)
    # names whose text order (0000, 003, 04, 1, 2, 5) is not their numeric order
    names = ["0000.png", "1.png", "img_2.png", "003.png", "04.png", "5.png"]
    for i, name in enumerate(names):
        write_png(poisoned[i], str(tmp_path / name))
    (tmp_path / "labels.txt").write_text("not an image: ignored")
    noise = attack(tmp_path).craft(ctx)
    assert noise.meta["format"] == "image-folder" and noise.form == "sample" and noise.meta["file_rows"] == 6
    assert torch.equal(release(ctx.x, ctx.y, noise), poisoned)


# --- index mapping --------------------------------------------------------------------------


def test_longer_file_needs_allow_prefix_without_train_index(tmp_path):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y) + 4, ctx.x.shape[1:])
    torch.save(delta, tmp_path / "long.pt")
    with pytest.raises(OptionError, match=r"24 rows .* trains on 20 images: expected exactly 20 rows.*allow_prefix=true"):
        attack(tmp_path / "long.pt").craft(ctx)
    noise = attack(tmp_path / "long.pt", allow_prefix="true").craft(ctx)
    assert torch.equal(noise.delta, delta[:20]) and noise.meta["mapping"] == "positional-prefix"


def test_indices_need_the_runner_to_pass_train_index(tmp_path):
    ctx = ctx_for()
    torch.save(random_delta(len(ctx.y), ctx.x.shape[1:]), tmp_path / "d.pt")
    with pytest.raises(OptionError, match=r"indices='0:20' needs .*CraftContext.train_index"):
        attack(tmp_path / "d.pt", indices="0:20").craft(ctx)


def _subset_of_full(n_full=30, pick=(1, 3, 4, 8, 10, 11, 15, 17, 20, 22), num_classes=5):
    """A 'full' training set and a protocol subset of it (with the subset's dataset indices)."""
    x_full, _ = synthetic_batch(n_per_class=n_full // num_classes, num_classes=num_classes, size=SIZE, seed=3)
    y_full = torch.arange(n_full) % num_classes
    index = torch.tensor(pick)
    return x_full, y_full, index


def test_train_index_maps_a_file_covering_the_first_k_images(tmp_path):
    x_full, y_full, index = _subset_of_full()
    poisoned_full = poison_images(x_full)
    np.save(tmp_path / "first25.npy", nhwc(poisoned_full[:25]).numpy())  # covers images 0..24 only
    ctx = ctx_for(num_classes=5, x=x_full[index], y=y_full[index], train_index=index)
    noise = attack(tmp_path / "first25.npy").craft(ctx)
    assert noise.meta["mapping"] == "train_index"
    assert torch.equal(release(ctx.x, ctx.y, noise), poisoned_full[index])
    # an image of the subset the file does not cover
    ctx_out = ctx_for(num_classes=5, x=x_full[torch.tensor([2, 26])], y=y_full[torch.tensor([2, 26])],
                      train_index=torch.tensor([2, 26]))
    with pytest.raises(OptionError,
                       match=r"no row for 1 of the subset's 2 training images \(dataset indices e.g. \[26\]\).*0\.\.24"):
        attack(tmp_path / "first25.npy").craft(ctx_out)


def test_indices_option_as_a_range_and_as_an_npy(tmp_path):
    x_full, y_full, index = _subset_of_full()
    delta_full = random_delta(len(x_full), x_full.shape[1:])
    ctx = ctx_for(num_classes=5, x=x_full[index], y=y_full[index], train_index=index)
    torch.save(delta_full[1:26], tmp_path / "from1.pt")  # rows are training images 1..25
    noise = attack(tmp_path / "from1.pt", indices="1:26").craft(ctx)
    assert torch.equal(noise.delta, delta_full[index])
    with pytest.raises(OptionError, match=r"indices 1:30 names 29 training images, but the file has 25 rows"):
        attack(tmp_path / "from1.pt", indices="1:30").craft(ctx)
    order = torch.randperm(len(x_full), generator=torch.Generator().manual_seed(1))  # rows in shuffled order
    torch.save(delta_full[order], tmp_path / "shuffled.pt")
    np.save(tmp_path / "order.npy", order.numpy())
    noise = attack(tmp_path / "shuffled.pt", indices=str(tmp_path / "order.npy")).craft(ctx)
    assert torch.equal(noise.delta, delta_full[index])
    np.save(tmp_path / "dup.npy", np.zeros(len(x_full), dtype=np.int64))
    with pytest.raises(OptionError, match=r"row indices repeat"):
        attack(tmp_path / "shuffled.pt", indices=str(tmp_path / "dup.npy")).craft(ctx)


def test_folder_names_are_the_training_indices(tmp_path):
    x_full, y_full, index = _subset_of_full()
    poisoned_full = poison_images(x_full)
    for i in range(len(x_full)):
        write_png(poisoned_full[i], str(tmp_path / f"{i:05d}.png"))
    ctx = ctx_for(num_classes=5, x=x_full[index], y=y_full[index], train_index=index)
    assert torch.equal(release(ctx.x, ctx.y, attack(tmp_path).craft(ctx)), poisoned_full[index])


# --- the ε budget and its tolerances ------------------------------------------------------------


def test_delta_beyond_eps_is_refused_with_a_hint(tmp_path):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y), ctx.x.shape[1:])
    delta[3, 0, 0, 0] = 9 / 255
    torch.save(delta, tmp_path / "big.pt")
    with pytest.raises(OptionError, match=r"big.pt: max \|δ\| = .*9/255\) \(file row 3.*exceeds ε = .*8/255.*--eps 9/255"):
        attack(tmp_path / "big.pt").craft(ctx)
    torch.save(delta.clamp(-EPS, EPS) * 255, tmp_path / "scale255.pt")
    with pytest.raises(OptionError, match=r"\[0, 255\] scale"):
        attack(tmp_path / "scale255.pt").craft(ctx)
    np.save(tmp_path / "float_images.npy", (ctx.x.float() / 255).numpy())
    with pytest.raises(OptionError, match=r"look like images in \[0, 1\]"):
        attack(tmp_path / "float_images.npy").craft(ctx)


def test_float_rounding_beyond_eps_is_tolerated_and_clipped(tmp_path):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y), ctx.x.shape[1:]).double()
    delta[0, 0, 0, 0] = EPS + 5e-7
    np.save(tmp_path / "d.npy", delta.numpy())
    noise = attack(tmp_path / "d.npy").craft(ctx)
    assert noise.delta.abs().max().item() <= EPS + 1e-7 and noise.meta["beyond_eps"] == 1


def test_images_beyond_eps_by_a_grey_level_are_refused(tmp_path):
    ctx = ctx_for()
    poisoned = poison_images(ctx.x, levels=8).clone()
    poisoned[5, 1, 2, 2] = min(int(ctx.x[5, 1, 2, 2]) + 9, 255) if ctx.x[5, 1, 2, 2] < 128 else int(ctx.x[5, 1, 2, 2]) - 9
    np.save(tmp_path / "p.npy", poisoned.numpy())
    with pytest.raises(OptionError, match=r"1 of 20 poisoned images differ .* up to 9/255, file row 5 .*--eps 9/255"):
        attack(tmp_path / "p.npy").craft(ctx)


def test_images_of_other_training_images_are_called_a_mismatch(tmp_path):
    ctx = ctx_for()
    np.save(tmp_path / "shifted.npy", poison_images(ctx.x).roll(1, 0).numpy())  # row i holds image i-1
    with pytest.raises(OptionError, match=r"do not seem to be those of the training set"):
        attack(tmp_path / "shifted.npy").craft(ctx)


@pytest.mark.parametrize("eps_levels, accepted", [(7.6, True), (7.5, False), (7.4, False), (8.0, True)])
def test_quantized_images_may_reach_the_grey_level_nearest_to_eps(tmp_path, eps_levels, accepted):
    """δ crafted at ε = 7.6/255 and rounded to 8 bits reaches 8 levels: accepted, clipped to ε,
    and released again as exactly the file's images; 8 levels at ε ≤ 7.5/255 are refused."""
    x = torch.full((10, 3, SIZE, SIZE), 100, dtype=torch.uint8)
    y = torch.arange(10)
    ctx = ctx_for(x=x, y=y, eps=eps_levels / 255)
    poisoned = x.clone()
    poisoned[:, 0] += 8
    poisoned[:, 1] -= 8
    np.save(tmp_path / "p.npy", poisoned.numpy())
    if not accepted:
        with pytest.raises(OptionError, match=r"up to 8/255"):
            attack(tmp_path / "p.npy").craft(ctx)
        return
    noise = attack(tmp_path / "p.npy").craft(ctx)
    assert noise.delta.abs().max().item() <= ctx.eps + 1e-7
    assert noise.meta["beyond_eps"] == (2 * 10 * SIZE * SIZE if eps_levels < 8 else 0)
    assert torch.equal(release(ctx.x, ctx.y, noise), poisoned)


# --- other rejections ----------------------------------------------------------------------------


def test_wrong_count(tmp_path):
    ctx = ctx_for()
    torch.save(random_delta(len(ctx.y) - 1, ctx.x.shape[1:]), tmp_path / "short.pt")
    with pytest.raises(OptionError, match=r"short.pt: 19 rows of sample-wise noise, but protocol 'smoke' trains on 20 images"):
        attack(tmp_path / "short.pt").craft(ctx)
    torch.save(random_delta(7, ctx.x.shape[1:]), tmp_path / "seven.pt")
    with pytest.raises(OptionError, match=r"7 rows, but class-wise noise has one per class: expected 10"):
        attack(tmp_path / "seven.pt", form="class").craft(ctx)


def test_rows_that_fit_both_forms_need_form(tmp_path):
    ctx = ctx_for(n_per_class=1)  # 10 images, 10 classes
    delta = random_delta(10, ctx.x.shape[1:])
    torch.save(delta, tmp_path / "ten.pt")
    with pytest.raises(OptionError, match=r"fit both .*set -o form=sample or -o form=class"):
        attack(tmp_path / "ten.pt").craft(ctx)
    assert attack(tmp_path / "ten.pt", form="class").craft(ctx).form == "class"
    assert attack(tmp_path / "ten.pt", form="sample").craft(ctx).form == "sample"


def test_images_cannot_be_classwise(tmp_path):
    ctx = ctx_for()
    np.save(tmp_path / "p.npy", poison_images(ctx.x).numpy())
    with pytest.raises(OptionError, match=r"poisoned images are one per training image"):
        attack(tmp_path / "p.npy", form="class").craft(ctx)


def test_wrong_image_shape(tmp_path):
    ctx = ctx_for()
    torch.save(random_delta(len(ctx.y), (3, 16, 16)), tmp_path / "d.pt")
    with pytest.raises(OptionError, match=r"d.pt: shape \(20, 3, 16, 16\), dtype float32; expected rows of 3×8×8"):
        attack(tmp_path / "d.pt").craft(ctx)
    write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), str(tmp_path / "0.png"))
    with pytest.raises(OptionError, match=r"0.png: a 3×16×16 uint8 image; expected 3×8×8"):
        attack(tmp_path).craft(ctx)


def test_nan_and_inf(tmp_path):
    ctx = ctx_for()
    delta = random_delta(len(ctx.y), ctx.x.shape[1:])
    delta[4, 0, 1, 1] = float("nan")
    delta[9, 2, 0, 0] = float("inf")
    torch.save(delta, tmp_path / "nan.pt")
    with pytest.raises(OptionError, match=r"nan.pt: 2 rows hold NaN or infinite values \(file row 4 first\)"):
        attack(tmp_path / "nan.pt").craft(ctx)


@pytest.mark.parametrize("array", [np.zeros((20, 3, SIZE, SIZE), np.int64), np.zeros((20, 3, SIZE, SIZE), bool)])
def test_wrong_dtype_npy(tmp_path, array):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(OptionError, match=rf"dtype {array.dtype}; expected float16/32/64 .* or uint8"):
        attack(tmp_path / "x.npy").craft(ctx_for())


def test_wrong_dtype_pt(tmp_path):
    torch.save(torch.zeros(20, 3, SIZE, SIZE, dtype=torch.int32), tmp_path / "x.pt")
    with pytest.raises(OptionError, match=r"dtype int32; expected float .* or uint8"):
        attack(tmp_path / "x.pt").craft(ctx_for())


def test_missing_file_and_missing_path():
    with pytest.raises(OptionError, match=r"path '/nonexistent/perturbation.pt': no such file or folder"):
        attack("/nonexistent/perturbation.pt")
    with pytest.raises(OptionError, match=r"invalid options for attack 'from-file': path is required: -o path="):
        build_options(FromFile.Options, {}, "attack 'from-file'")
    # built directly (as the registry contract does): craft says what is missing, never returns clean data
    with pytest.raises(OptionError, match=r"attack 'from-file': path is required"):
        FromFile().craft(ctx_for())
    with pytest.raises(OptionError, match=r"no such file or folder"):
        FromFile(FromFile.Options(path="/nonexistent.npy")).craft(ctx_for())


def test_empty_folder_and_folders_of_folders(tmp_path):
    with pytest.raises(OptionError, match=r"no image files .* in it \(0 other entries\)"):
        attack(tmp_path).craft(ctx_for())
    (tmp_path / "airplane").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OptionError, match=r"no image files .*folders \['airplane'\]"):
        attack(tmp_path).craft(ctx_for())


def test_folder_names_without_or_with_clashing_numbers(tmp_path):
    ctx = ctx_for(n_per_class=1, num_classes=2)
    write_png(ctx.x[0], str(tmp_path / "1.png"))
    write_png(ctx.x[1], str(tmp_path / "01.png"))
    with pytest.raises(OptionError, match=r"both stand for training image 1"):
        attack(tmp_path).craft(ctx)
    (tmp_path / "01.png").unlink()
    write_png(ctx.x[1], str(tmp_path / "cover.png"))
    with pytest.raises(OptionError, match=r"'cover.png' has no number in its name"):
        attack(tmp_path).craft(ctx)


class Trap:
    """Unpickling this would open (create) ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    ctx = ctx_for()
    marker = tmp_path / "ran"
    torch.save({"delta": random_delta(len(ctx.y), ctx.x.shape[1:]), "trap": Trap(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(OptionError, match=r"evil.pt: holds Python objects \(\S*open\) .* never runs code"):
        attack(tmp_path / "evil.pt").craft(ctx)
    trap = np.empty(1, dtype=object)
    trap[0] = Trap(str(marker))
    np.save(tmp_path / "evil.npy", trap, allow_pickle=True)
    with pytest.raises(OptionError, match=r"evil.npy: holds Python objects .*never unpickles"):
        attack(tmp_path / "evil.npy").craft(ctx)
    np.savez(tmp_path / "evil.npz", trap=trap)
    with pytest.raises(OptionError, match=r"evil.npz: holds Python objects"):
        attack(tmp_path / "evil.npz").craft(ctx)
    assert not marker.exists()


def test_unreadable_and_unknown_files(tmp_path):
    ctx = ctx_for()
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(OptionError, match=r"junk.pt: not a readable torch file"):
        attack(tmp_path / "junk.pt").craft(ctx)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(OptionError, match=r"junk.npy: not a readable .npy file"):
        attack(tmp_path / "junk.npy").craft(ctx)
    (tmp_path / "d.h5").write_bytes(b"")
    with pytest.raises(OptionError, match=r"unknown kind of file '.h5'"):
        attack(tmp_path / "d.h5").craft(ctx)
    torch.save({"epoch": 3}, tmp_path / "nodelta.pt")
    with pytest.raises(OptionError, match=r"a dict with keys \['epoch'\] and no tensor"):
        attack(tmp_path / "nodelta.pt").craft(ctx)
    torch.save([torch.zeros(1), torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(OptionError, match=r"holds a list of 2 items; expected a tensor"):
        attack(tmp_path / "list.pt").craft(ctx)


# --- options and registration --------------------------------------------------------------------


@pytest.mark.parametrize("indices", ["5:3", "a:b", "7", "-1:4"])
def test_bad_indices_syntax(tmp_path, indices):
    torch.save(torch.zeros(1), tmp_path / "d.pt")
    with pytest.raises(OptionError, match=r"write a:b with 0 <= a < b"):
        attack(tmp_path / "d.pt", indices=indices)


def test_parse_indices():
    assert from_file.parse_indices("") is None
    assert from_file.parse_indices(":5000") == (0, 5000)
    assert from_file.parse_indices(" 10:20 ") == (10, 20)
    assert str(from_file.parse_indices("rows.npy")) == "rows.npy"


def test_declaration_and_registration():
    registered = []
    from_file.register_attacks(registered.append)
    assert registered == [FromFile] and FromFile.name == "from-file"
    assert FromFile.__doc__ and FromFile.cacheable is False
    names = {o["name"]: o for o in describe_options(FromFile.Options)}
    assert list(names) == ["path", "key", "form", "indices", "allow_prefix", "class_map"]
    assert names["form"]["choices"] == ["auto", "sample", "class"] and names["allow_prefix"]["default"] is False
    resolved = FromFile().resolve(get_protocol("smoke"), EPS)
    assert resolved is not FromFile().options and all(getattr(resolved, f.name) is not None for f in dataclasses.fields(resolved))


def test_registry_contract_with_a_path(tmp_path):
    """What tests/test_registry_contracts.py asserts of every attack, on its 32×32 context, given a file."""
    from conftest import make_ctx

    ctx = make_ctx(n_per_class=2)
    torch.save(random_delta(len(ctx.y), ctx.x.shape[1:]), tmp_path / "perturbation.pt")
    noise = FromFile(FromFile.Options(path=str(tmp_path / "perturbation.pt"))).craft(ctx)
    assert tuple(noise.delta.shape) == (len(ctx.y), *ctx.x.shape[1:])
    assert noise.delta.dtype == torch.float32 and torch.isfinite(noise.delta).all()
    assert noise.delta.abs().max().item() <= ctx.eps + 1e-6 and noise.eps == pytest.approx(ctx.eps)


# --- transfer through a class map ------------------------------------------------------------


def test_class_map_transfers_class_noise_from_another_dataset(tmp_path):
    """Noise crafted for 1000 source classes (say ImageNet at 32×32) reaches the target classes
    through the paper's map; a map that leaves a class out, or names a missing row, is refused."""
    from uebench.attacks.from_file import CLASS_MAPS

    ctx = make_ctx(n_per_class=2)
    source = (torch.rand(1000, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1) * ctx.eps
    path = tmp_path / "imagenet-classwise.pt"
    torch.save(source, path)
    noise = FromFile(FromFile.Options(path=str(path), class_map="imagenet-cifar10")).craft(ctx)
    wanted = [CLASS_MAPS["imagenet-cifar10"][k] for k in range(10)]
    assert noise.form == "class" and torch.equal(noise.delta, source[wanted])
    assert noise.meta["class_map"] == wanted
    custom = FromFile(FromFile.Options(path=str(path), class_map=",".join(f"{k}={999 - k}" for k in range(10)))).craft(ctx)
    assert torch.equal(custom.delta, source[[999 - k for k in range(10)]])
    with pytest.raises(OptionError, match=r"unmapped: \[9\]"):
        FromFile(FromFile.Options(path=str(path), class_map=",".join(f"{k}={k}" for k in range(9)))).craft(ctx)
    small = tmp_path / "small.pt"
    torch.save(source[:20], small)
    with pytest.raises(OptionError, match=r"source rows \[32, 94, 207"):
        FromFile(FromFile.Options(path=str(small), class_map="imagenet-cifar10")).craft(ctx)
    with pytest.raises(OptionError, match="is not TARGET=SOURCE"):
        build_options(FromFile.Options, {"path": str(path), "class_map": "bird=hummingbird"})


# --- the resolved form: what the cell's key and its row's label name -------------------------


def _label(attack_impl, resolved) -> str:
    """The leaderboard label of a row whose attack options are ``resolved``."""
    import pandas as pd

    from uebench.options import applied_options, canonical_json
    from uebench.stats import attack_label

    return attack_label(pd.Series({"attack": attack_impl.name, "attack_options": canonical_json(applied_options(resolved))}))


def test_resolve_records_the_form_the_files_header_decides(tmp_path):
    """``form=auto`` is made concrete before crafting wherever the file's header decides it, so a
    row's label says ``form=class`` for a class-wise file, not ``form=auto``."""
    from uebench.datasets.cifar10 import Cifar10

    smoke = get_protocol("smoke")
    torch.save(random_delta(10, (3, SIZE, SIZE)), tmp_path / "classwise.pt")
    np.save(tmp_path / "samplewise.npy", random_delta(500, (3, SIZE, SIZE)).numpy())
    np.savez(tmp_path / "images.npz", x_poison=np.zeros((500, SIZE, SIZE, 3), np.uint8), labels=np.zeros(500, np.int64))
    folder = tmp_path / "folder"
    folder.mkdir()
    write_png(torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), str(folder / "0.png"))
    torch.save(random_delta(1000, (3, SIZE, SIZE)), tmp_path / "imagenet.pt")

    classwise = attack(tmp_path / "classwise.pt")
    resolved = classwise.resolve(smoke, EPS, dataset=Cifar10())
    assert resolved.form == "class" and _label(classwise, resolved) == "from-file form=class"
    assert attack(tmp_path / "samplewise.npy").resolve(smoke, EPS, dataset=Cifar10()).form == "sample"
    assert attack(tmp_path / "classwise.pt").resolve(get_protocol("paper"), EPS, dataset=Cifar10()).form == "class"
    # poisoned images and folders are sample-wise, a class map class-wise: no dataset needed
    assert attack(tmp_path / "images.npz", key="x_poison").resolve(smoke, EPS).form == "sample"
    assert attack(folder).resolve(smoke, EPS).form == "sample"
    assert attack(tmp_path / "imagenet.pt", class_map="imagenet-cifar10").resolve(smoke, EPS).form == "class"
    # undecided: a δ without the dataset, or an explicit form, keeps what was given
    assert classwise.resolve(smoke, EPS).form == "auto"
    assert attack(tmp_path / "classwise.pt", form="sample").resolve(smoke, EPS, dataset=Cifar10()).form == "sample"
    assert classwise.options.form == "auto"  # resolve returns a copy


def test_resolve_reads_headers_only_and_leaves_unreadable_files_to_craft(tmp_path, monkeypatch):
    """The header is read without loading the values (np.load and a plain torch.load are never
    called), and a file whose header says nothing decides nothing: craft reports what is wrong."""
    np.save(tmp_path / "images.npy", np.zeros((500, SIZE, SIZE, 3), np.uint8))
    torch.save(torch.zeros(500, 3, SIZE, SIZE, dtype=torch.uint8), tmp_path / "images.pt")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    real_load = torch.load

    def mapped_only(*args, **kwargs):
        assert kwargs.get("mmap") and kwargs.get("weights_only"), "resolve must only map a .pt, never read or unpickle it"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("resolve read the array"))
    monkeypatch.setattr(torch, "load", mapped_only)
    smoke = get_protocol("smoke")
    assert attack(tmp_path / "images.npy").resolve(smoke, EPS).form == "sample"
    assert attack(tmp_path / "images.pt").resolve(smoke, EPS).form == "sample"
    assert attack(tmp_path / "broken.npy").resolve(smoke, EPS).form == "auto"
    monkeypatch.undo()
    with pytest.raises(OptionError, match="not a readable .npy"):
        attack(tmp_path / "broken.npy").craft(ctx_for())


def test_craft_keeps_to_the_form_the_cell_resolved(tmp_path):
    """The runner hands the resolved options on (``ctx.options``): the noise is of the form the
    key names, or crafting fails; it never silently becomes the other form."""
    ctx = ctx_for(n_per_class=2)  # 20 images of 10 classes
    torch.save(random_delta(10, (3, SIZE, SIZE)), tmp_path / "ten.pt")
    chosen = attack(tmp_path / "ten.pt")
    ctx.options = dataclasses.replace(chosen.options, form="class")
    assert chosen.craft(ctx).form == "class"
    ctx.options = dataclasses.replace(chosen.options, form="sample")
    with pytest.raises(OptionError, match="10 rows of sample-wise noise"):
        chosen.craft(ctx)


def test_a_class_map_with_form_sample_is_refused(tmp_path):
    """A class map always makes class-wise noise: form=sample would put the wrong form in the key."""
    torch.save(random_delta(1000, (3, SIZE, SIZE)), tmp_path / "imagenet.pt")
    with pytest.raises(OptionError, match="class_map makes class-wise noise"):
        attack(tmp_path / "imagenet.pt", class_map="imagenet-cifar10", form="sample")
    assert attack(tmp_path / "imagenet.pt", class_map="imagenet-cifar10", form="class").options.form == "class"
