"""Seeing a poison and exporting it (issue 20): ``uebench.gallery`` on tiny synthetic tensors,
``uebench noise show|export`` and ``uebench leaderboard gallery`` end to end at the ``smoke``
protocol (real CIFAR-10, a 500-image subset; only model-free attacks are crafted)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import assert_clean_error, require_data
from uebench.gallery import MID_GREY, amplify, choose, difference, gallery, grid_png, png_bytes

CLASSES = tuple(f"class{k}" for k in range(4))


def _set(per_class=3, classes=4, seed=0, low=16, high=240):
    """uint8 N×3×8×8 images away from 0 and 255 (no clamping), labels, and shuffled dataset indices."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat(per_class)  # classes interleaved, as a subset would hold them
    x = torch.randint(low, high, (len(y), 3, 8, 8), generator=g, dtype=torch.uint8)
    index = torch.randperm(1000, generator=g)[: len(y)].sort().values
    return x, y, index


def _release(x, y, delta, form):
    from uebench.noise import Noise
    from uebench.poison import release

    return release(x, y, Noise(delta, form, 8 / 255))


# --- the pure functions ------------------------------------------------------------------------


def test_amplify_maps_zero_to_mid_grey_and_the_extremes_to_black_and_white():
    delta = torch.zeros(3, 3, 4, 4, dtype=torch.int16)
    delta[0, 0, 0, 0], delta[0, 1, 2, 2] = 8, -8  # image 0: ±8 levels
    delta[1, 2, 3, 3] = -3  # image 1: only a negative extreme, smaller: its own scale
    shown = amplify(delta)
    assert shown.dtype == torch.uint8
    assert int(shown[0, 0, 0, 0]) == 255 and int(shown[0, 1, 2, 2]) == 0
    assert int(shown[0, 0, 1, 1]) == MID_GREY == 128
    assert int(shown[1, 2, 3, 3]) == 0 and int(shown[1, 0, 0, 0]) == MID_GREY
    assert bool((shown[2] == MID_GREY).all())  # an unchanged image stays flat mid-grey
    half = amplify(torch.tensor([4, 8, -2, 0], dtype=torch.int16).view(1, 1, 2, 2)).flatten().tolist()
    assert half == [191, 255, 96, 128]  # 0.5 + δ/16, times 255, rounded


def test_the_same_images_are_chosen_for_every_attack():
    x, y, index = _set()
    first = choose(y, index, 4)
    assert first.tolist() == [0, 1, 2, 3]  # the first image of each class by dataset index
    assert [int(y[p]) for p in first] == [0, 1, 2, 3]
    a = gallery(x, _release(x, y, torch.full((4, 3, 8, 8), 4 / 255), "class"), y, CLASSES, index)
    noise = (torch.rand(len(y), 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 8 / 255
    b = gallery(x, _release(x, y, noise, "sample"), y, CLASSES, index)
    assert [s.index for s in a] == [s.index for s in b] == index[first].tolist()
    assert [s.class_name for s in a] == list(CLASSES)
    assert all(torch.equal(s.clean, t.clean) for s, t in zip(a, b, strict=True))
    # the order of the subset does not matter, the dataset index does
    reverse = torch.arange(len(y) - 1, -1, -1)
    picked = choose(y[reverse], index[reverse], 4)
    assert index[reverse][picked].tolist() == index[first].tolist()
    with pytest.raises(ValueError, match="class 3 has 0 image"):
        choose(y[y != 3], index[y != 3], 4)


def test_a_class_wise_noise_shows_one_pattern_per_class():
    x, y, index = _set(per_class=3)
    levels = torch.randint(-8, 9, (4, 3, 8, 8), generator=torch.Generator().manual_seed(2)).float()
    released = _release(x, y, levels / 255, "class")
    shown = gallery(x, released, y, CLASSES, index, per_class=3)
    by_class: dict[int, list[torch.Tensor]] = {}
    for s in shown:
        by_class.setdefault(s.label, []).append(s.delta)
        assert torch.equal(difference(s.clean[None], s.poisoned[None])[0], levels[s.label].to(torch.int16))
    for k, pictures in by_class.items():
        assert len(pictures) == 3 and all(torch.equal(p, pictures[0]) for p in pictures), f"class {k}: patterns differ"
    patterns = [by_class[k][0] for k in range(4)]
    assert all(not torch.equal(patterns[i], patterns[j]) for i in range(4) for j in range(i + 1, 4))


def test_psnr_is_the_imperceptibility_modules():
    from uebench.imperceptibility import measure, per_image

    x, y, index = _set()
    noise = (torch.rand(len(y), 3, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1) * 8 / 255
    noise[y == 2] = 0  # class 2 unchanged: PSNR ∞
    released = _release(x, y, noise, "sample")
    shown = gallery(x, released, y, CLASSES, index)
    expected = per_image(x, released)["psnr"]
    for s in shown:
        if s.label == 2:
            assert s.psnr is None and s.delta_max == 0
            continue
        assert s.psnr == round(float(expected[s.position]), 4)
        assert s.psnr == measure(x[s.position:s.position + 1], released[s.position:s.position + 1])["psnr_mean"]


def test_pngs_are_native_lossless_and_the_same_bytes_each_time():
    from torchvision.io import decode_png

    x, y, index = _set()
    data = png_bytes(x[0])
    assert data == png_bytes(x[0].clone()) and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert torch.equal(decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8)), x[0])
    grid = grid_png(gallery(x, x.clone(), y, CLASSES, index), "a title", scale=2)
    picture = decode_png(torch.frombuffer(bytearray(grid), dtype=torch.uint8))
    assert picture.shape[0] in (3, 4) and picture.shape[1] > 4 * 16  # a row per class, each 16 px high at least


# --- the command line (smoke protocol, real data) -----------------------------------------------


@pytest.fixture
def data():
    return require_data()


def _release_of(attack, options=None, eps=8 / 255, seed=0, out=None):
    """A smoke cell's released set, as ``run`` makes it (``out``: the folder prepare checks; nothing is written)."""
    import tempfile

    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.gallery_board import cell_release

    spec = CellSpec(attack=attack, protocol="smoke", eps=eps, seed=seed, attack_options=dict(options or {}))
    return cell_release(prepare(spec, RunSettings(out=Path(out or tempfile.gettempdir()))))


def test_noise_show_draws_the_grid(invoke, data, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("noise", "show", "--attack", "random", "-o", "form=class", "--protocol", "smoke", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in result.output and "airplane" in result.output and "PSNR" in result.output


@pytest.mark.parametrize("fmt", ["npz", "png"])
def test_export_then_from_file_releases_the_same_bytes(invoke, data, tmp_path, fmt):
    import numpy as np

    out = tmp_path / ("poison.npz" if fmt == "npz" else "poison")
    result = invoke("noise", "export", "--attack", "random", "-o", "form=sample", "--protocol", "smoke", "--seed", 1,
                    "--out", out, "--format", fmt)
    assert result.exit_code == 0, result.output
    original = _release_of("random", {"form": "sample"}, seed=1)
    command = result.output.strip().splitlines()[-1].split()
    assert command[:4] == ["uebench", "run", "--attack", "from-file"] and "--eps" not in command  # an L∞ poison: its own ε
    options = dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "-o")
    assert options["path"] == str(out)
    if fmt == "npz":
        with np.load(out, allow_pickle=False) as archive:
            assert archive["x_poison"].shape == (500, 32, 32, 3) and archive["x_poison"].dtype == np.uint8
            assert np.array_equal(archive["indices"], original.index.numpy())
            assert np.array_equal(archive["y"], original.labels.numpy())
        assert np.array_equal(np.load(options["indices"]), original.index.numpy())
    else:
        assert sorted(int(p.stem) for p in out.glob("*.png")) == sorted(original.index.tolist())
        assert np.array_equal(np.load(out / "indices.npy"), original.index.numpy())
    again = _release_of("from-file", options)
    assert again.images.numpy().tobytes() == original.images.numpy().tobytes()
    assert torch.equal(again.index, original.index)


def test_an_export_beyond_eps_names_the_eps_from_file_needs(invoke, data, tmp_path):
    out = tmp_path / "cuda"
    result = invoke("noise", "export", "--attack", "cuda", "--protocol", "smoke", "--out", out, "--format", "png")
    assert result.exit_code == 0, result.output
    command = result.output.strip().splitlines()[-1].split()
    eps = command[command.index("--eps") + 1]
    from uebench.options import parse_fraction

    again = _release_of("from-file", {"path": str(out)}, eps=parse_fraction(eps, "eps"))
    assert again.images.numpy().tobytes() == _release_of("cuda").images.numpy().tobytes()


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as loading data or crafting."""
    import uebench.gallery_board

    def refuse(*args, **kwargs):
        raise AssertionError("the command started work before rejecting its input")

    monkeypatch.setattr(uebench.gallery_board, "cell_release", refuse)


@pytest.mark.parametrize("args, says", [
    (["show", "--attack", "errmin-pgdd"], "Did you mean 'errmin-pgd'"),
    (["show", "--attack", "errmin-pgd", "-o", "nonsense=1"], "no component declares option 'nonsense'"),
    (["show", "--attack", "errmin-pgd", "-o", "form"], "key=value"),
    (["export", "--attack", "errmin-pgd", "--poison-rate", "2"], "outside [0, 1]"),
], ids=["unknown attack", "unknown option", "malformed option", "poison rate"])
def test_bad_input_exits_2_before_any_work(invoke, data, tmp_path, no_work, args, says):
    start = time.perf_counter()
    result = invoke("noise", *args, "--protocol", "smoke", "--out", tmp_path / "x.npz")
    output = assert_clean_error(result, 2)
    assert says in output, output
    assert time.perf_counter() - start < 30


def test_an_out_that_cannot_be_written_exits_2_before_any_work(invoke, data, tmp_path, no_work):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (["show", "--out", blocker / "grid.png"], ["export", "--out", blocker / "p.npz"],
                 ["export", "--out", tmp_path / "p.zip"], ["export", "--format", "png", "--out", blocker]):
        result = invoke("noise", *args, "--attack", "errmin-pgd", "--protocol", "smoke")
        output = assert_clean_error(result, 2)
        assert "--out" in output, output
    full = tmp_path / "full"
    full.mkdir()
    (full / "0.png").write_bytes(b"")
    output = assert_clean_error(invoke("noise", "export", "--format", "png", "--out", full, "--attack", "random",
                                       "--protocol", "smoke"), 2)
    assert "holds files" in output


# --- the committed gallery --------------------------------------------------------------------


def _board(root: Path, attacks: list[tuple[str, dict]]) -> Path:
    """A results.csv at the smoke protocol holding one planned row per attack (as a sweep would write them)."""
    from uebench.cell import CellSpec, RunSettings, prepare
    from uebench.cellkey import cell_key, config_key
    from uebench.record import planned_row

    rows = []
    for i, (attack, options) in enumerate(attacks):
        for seed in (1, 0):
            cell = prepare(CellSpec(attack=attack, protocol="smoke", seed=seed, attack_options=options), RunSettings(out=root))
            planned = planned_row(cell)
            rows.append({"run_id": f"2026-{i}-{seed}", "cell_key": cell_key(planned), "config_key": config_key(planned),
                         **planned, "norm": "linf", "final_test_acc": 0.5, "noise_key": ""})
    csv = root / "smoke" / "results.csv"
    csv.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_committed_gallery_is_deterministic_and_honest(invoke, data, tmp_path):
    root = tmp_path / "boards"
    _board(root, [("none", {}), ("random", {"form": "class"}), ("random", {"form": "sample"}),
                  ("errmin-pgd", {"form": "class"})])
    args = ["leaderboard", "gallery", "--root", root, "--protocol", "smoke", "--cached-only"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    folder = root / "gallery" / "smoke" / "cifar10"
    first = _files(folder)
    manifest = json.loads(first["gallery.json"])
    attacks = manifest["attacks"]
    assert set(attacks) == {"none", "random form=class", "random form=sample", "errmin-pgd form=class"}
    pending = attacks["errmin-pgd form=class"]
    assert pending["status"] == "not crafted" and "not in the noise cache" in pending["why"]
    assert pending["command"].startswith("uebench noise show --protocol smoke --dataset cifar10 --attack errmin-pgd "
                                         "-o form=class")
    assert not (folder / "errmin-pgd-form-class").exists()  # never a made-up picture
    shown = [e for e in attacks.values() if e["status"] == "shown"]
    assert len(shown) == 3 and all(e["indices"] == manifest["indices"] for e in shown)  # the same images for every attack
    assert manifest["classes"][:3] == ["airplane", "automobile", "bird"] and len(manifest["indices"]) == 10
    clean = attacks["none"]
    assert clean["poisoned"] is None and clean["psnr"] == [None] * 10 and clean["form"] is None
    for label in ("random form=class", "random form=sample"):
        entry = attacks[label]
        assert entry["seed"] == 0 and entry["norm"] == "linf" and entry["form"] == label.split("=")[1]
        assert len(entry["psnr"]) == 10 and all(30 < p < 40 for p in entry["psnr"]) and 30 < entry["psnr_mean"] < 40
        assert entry["poisoned"][0] == f"{label.replace(' ', '-').replace('=', '-')}/poisoned-0.png"
        for name in entry["poisoned"] + entry["delta"] + entry["clean"]:
            assert 100 < len(first[name]) < 6000, name  # native 32×32 PNGs: a few KB
    assert first["gallery.json"].decode() == json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    assert not any(k in json.dumps(manifest) for k in ("timestamp", "date", "git_sha"))  # nothing that changes by itself

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert _files(folder) == first  # the same bytes, file for file

    # only the labels a pattern matches are remade; the others keep their entries
    only = invoke("leaderboard", "gallery", "--root", root, "--protocol", "smoke", "--attack", "random*", "--cached-only")
    assert only.exit_code == 0, only.output
    assert _files(folder) == first

    # without --cached-only the missing noise is crafted (through the cache) and shown ...
    crafted = invoke("leaderboard", "gallery", "--root", root, "--protocol", "smoke", "--attack", "errmin*")
    assert crafted.exit_code == 0, crafted.output
    entry = json.loads((folder / "gallery.json").read_text())["attacks"]["errmin-pgd form=class"]
    assert entry["status"] == "shown" and entry["form"] == "class" and entry["noise_key"]
    assert entry["indices"] == manifest["indices"] and (folder / "errmin-pgd-form-class" / "delta-9.png").is_file()
    made = _files(folder)
    # ... and a later --cached-only run without that cache keeps the pictures made from it
    from uebench.craft.cache import NoiseCache

    NoiseCache().path(entry["noise_key"]).unlink()
    assert invoke(*args).exit_code == 0
    assert _files(folder) == made


def test_gallery_bad_input_exits_2(invoke, data, tmp_path):
    root = tmp_path / "boards"
    _board(root, [("random", {"form": "class"})])
    output = assert_clean_error(invoke("leaderboard", "gallery", "--root", root, "--protocol", "smoke", "--attack", "tap*"), 2)
    assert "matches no attack label" in output and "random form=class" in output
    output = assert_clean_error(invoke("leaderboard", "gallery", "--root", root, "--protocol", "cpu"), 2)
    assert "results.csv" in output


# --- help ------------------------------------------------------------------------------------------


def _help(*args) -> str:
    from click.testing import CliRunner

    from uebench.cli import cli

    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_noise_help_texts_are_whole():
    page = " ".join(_help("noise").split())
    assert "show Draw clean | poisoned | noise of one image per class as a PNG." in page
    assert "export Write a cell's released training images for other tools." in page
    show = " ".join(_help("noise", "show").split())
    assert "uebench noise show --attack errmin-pgd -o form=class --protocol cpu --out errmin-class.png" in show
    for flag in ("--attack", "-o, --option", "--seed", "--protocol", "--dataset", "--eps", "--poison-rate", "--poison-classes",
                 "--data-dir", "--cache-dir", "--device", "--precision", "--threads", "--out", "--scale"):
        assert flag in show, flag
    export = _help("noise", "export")
    assert "uebench noise export --attack errmin-pgd -o form=class --protocol cpu --out errmin-class.npz" in export
    assert "OUT.indices.npy" in " ".join(export.split()) and "--format [npz|png]" in export


def test_leaderboard_gallery_help_is_whole():
    listing = " ".join(_help("leaderboard").split())
    assert "gallery Draw every attack of a board on the same ten images, as PNGs." in listing
    page = " ".join(_help("leaderboard", "gallery").split())
    assert "uebench leaderboard gallery --protocol cpu --cached-only" in page
    for flag in ("--root", "--protocol", "--attack PATTERN", "--cached-only", "--data-dir", "--cache-dir"):
        assert flag in page, flag
