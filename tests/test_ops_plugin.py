"""The attack plugin package ``plugins/uebench-ops`` (One-Pixel Shortcut, Wu et al. ICLR 2023).

The unit tests load its module straight from the folder (no install needed): the search's score
against its definition computed pixel by pixel, the search against a brute-force greedy search
and a planted shortcut, and the noise: one pixel per image, poisoned pixels inside [0, 1] and on
the target colour, ``Noise.eps`` the true max |δ| (which uebench's noise-file check holds it
to), deterministic bytes.

The ``slow`` group installs the package (``pip install --no-deps -e``, or an equivalent
hand-built wheel when the interpreter's setuptools cannot build one), finds it through the
``uebench`` entry-point group — in this process and in a fresh interpreter — and runs a smoke
cell.  An install this module made (it names itself in the dist-info's INSTALLER file) is
removed afterwards, or at the next run when an interrupted one left it behind; an install it
found (a developer's, CI's) is used and left alone.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, build_wheel, can_build_from_source, json_out, make_ctx, require_data, synthetic_batch
from uebench.noise import Noise, NoiseFileError, apply_noise, load_noise, save_noise, to_unit_float
from uebench.options import OptionError, build_options, describe_options
from uebench.poison import release

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli there
    import tomli as tomllib

PLUGIN_DIR = REPO / "plugins" / "uebench-ops"
PYPROJECT = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())
DIST, VERSION = PYPROJECT["project"]["name"], PYPROJECT["project"]["version"]
ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["uebench"]  # {"ops": "uebench_ops"}
MODULE = "uebench_ops"
INSTALLER = "uebench-tests"  # the dist-info INSTALLER (PEP 376) of an install this module made


def _load_module():
    """The plugin module from its folder, under a private name (the entry-point tests import the
    installed ``uebench_ops`` themselves)."""
    name = "uebench_ops_under_test"
    spec = importlib.util.spec_from_file_location(name, PLUGIN_DIR / MODULE / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve the Options annotations through it
    spec.loader.exec_module(module)
    return module


ops = _load_module()
OPS = ops.OnePixelShortcut


def _craft(ctx, **options):
    return OPS(build_options(OPS.Options, options, "attack 'ops'")).craft(ctx)


def _ctx_over(x, y, num_classes):
    """make_ctx's CraftContext over given images (OPS needs no model)."""
    ctx = make_ctx(n_per_class=1, num_classes=num_classes)
    ctx.x, ctx.y = x, y
    return ctx


def _touched(delta: torch.Tensor) -> torch.Tensor:
    """bool N×H×W: the pixel positions δ changes in any channel."""
    return delta.ne(0).any(1)


# --- the search ---------------------------------------------------------------------------


def test_corner_colours_follow_the_authors_bit_order():
    rgb = ops.corner_colours(3)
    assert rgb.shape == (8, 3) and len({tuple(r) for r in rgb.tolist()}) == 8
    assert rgb[5].tolist() == [1, 0, 1] and rgb[1].tolist() == [0, 0, 1] and rgb[4].tolist() == [1, 0, 0]
    assert ops.corner_colours(1).tolist() == [[0.0], [1.0]]


def _reference_scores(images: torch.Tensor, score: str) -> np.ndarray:
    """The objective straight from its definition, one position and colour at a time (numpy,
    H×W×C layout as in the authors' ``perturb.py``)."""
    x = images.permute(0, 2, 3, 1).numpy().astype(np.float64) / 255
    _, h, w, c = x.shape
    colours = ops.corner_colours(c).numpy().astype(np.float64)
    out = np.empty((len(colours), h, w))
    for i, colour in enumerate(colours):
        for r in range(h):
            for col in range(w):
                change = np.abs(colour - x[:, r, col, :])  # n×C
                g = change.sum(1) if score == "l1" else change  # per image, or pooled over images × channels
                out[i, r, col] = np.mean(g) / (np.std(g) + ops.SCORE_EPS)
    return out


def _tiny_class(seed=0, n=7, size=(4, 5)):
    """Random pixels plus the edge cases: a pixel all images hold at a corner colour (no change
    for that colour, std 0) and one all hold at a mid grey (a constant change, std 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, *size), generator=g, dtype=torch.uint8)
    x[:, :, 0, 0] = torch.tensor([255, 0, 255], dtype=torch.uint8).view(1, 3)
    x[:, :, 1, 2] = 128
    return x


@pytest.mark.parametrize("score", ops.SCORES)
def test_scores_match_the_definition_pixel_by_pixel(score):
    x = _tiny_class()
    got = ops.class_scores(x, score)
    assert got.dtype == torch.float64 and got.shape == (8, 4, 5)
    want = _reference_scores(x, score)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
    assert got[5, 0, 0] == 0  # every image already holds colour (1, 0, 1) there: no change, score 0 (not 0/0)
    # mid grey: every colour changes each image by the same L1 amount (std 0, the top of the scale);
    # pooled over channels only black and white do (a 128 and a 127 step differ)
    constant = got[:, 1, 2] if score == "l1" else got[[0, 7], 1, 2]
    assert constant.min() > 1e5


def test_scores_of_one_channel_images():
    x = torch.randint(0, 256, (5, 1, 3, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    for score in ops.SCORES:
        np.testing.assert_allclose(ops.class_scores(x, score).numpy(), _reference_scores(x, score), rtol=1e-9, atol=1e-9)


def _reference_search(x, y, num_classes, pixels, score):
    """The selection rule, spelled out: classes in label order, each takes its ``pixels`` best
    (position, colour) pairs at distinct positions, never a pair an earlier class took; ties to
    the lowest position (row-major), then the lowest colour index."""
    _, c, h, w = x.shape
    taken, chosen = set(), {}
    for k in range(num_classes):
        s = _reference_scores(x[y == k], score)
        ranked = sorted((-s[i, r, col], r * w + col, i) for i in range(2**c) for r in range(h) for col in range(w))
        picks, used_positions = [], set()
        for _, position, colour in ranked:
            if (position, colour) in taken or position in used_positions:
                continue
            picks.append((divmod(position, w), colour))
            used_positions.add(position)
            if len(picks) == pixels:
                break
        taken |= {(r * w + col, colour) for (r, col), colour in picks}
        chosen[k] = picks
    return chosen


@pytest.mark.parametrize("score", ops.SCORES)
@pytest.mark.parametrize("pixels", [1, 2])
def test_search_matches_a_brute_force_greedy_search(score, pixels):
    x, y = synthetic_batch(n_per_class=5, num_classes=3, size=3, seed=2)
    positions, colours = ops.search(x, y, 3, pixels, score)
    assert positions.shape == (3, pixels, 2) and positions.dtype == torch.int64
    assert colours.shape == (3, pixels, 3)
    corners = ops.corner_colours(3).tolist()
    got = {k: [(tuple(positions[k, j].tolist()), corners.index(colours[k, j].tolist())) for j in range(pixels)] for k in range(3)}
    assert got == _reference_search(x, y, 3, pixels, score)


def test_search_finds_planted_shortcuts_and_never_reuses_a_pair():
    """Class k's images all hold the colour *opposite* to a target ξ_k at a position p_k: setting
    p_k to ξ_k changes every image by the maximum (3 on the L1 scale) with std 0 — the search must
    find it.  Classes 2 and 3 are planted at the same position with the same colour: class 3
    cannot take class 2's pair, so it keeps the position with the best colour still free."""
    x, y = synthetic_batch(n_per_class=4, num_classes=5, size=8, seed=3)
    corners = ops.corner_colours(3)
    plants = {0: ((1, 2), 6), 1: ((5, 7), 1), 2: ((3, 3), 3), 3: ((3, 3), 3), 4: ((0, 0), 0)}  # k → (p_k, ξ_k index)
    for k, ((r, c), colour) in plants.items():
        x[y == k, :, r, c] = ((1 - corners[colour]) * 255).to(torch.uint8).view(1, 3)
    positions, colours = ops.search(x, y, 5)
    for k in (0, 1, 2, 4):
        assert tuple(positions[k, 0].tolist()) == plants[k][0]
        assert colours[k, 0].tolist() == corners[plants[k][1]].tolist()
    # class 3: the pixel is (1−ξ) = colour 4 = (1, 0, 0); ξ = 3 is taken, so a colour 2 channels away wins:
    # 1 (0, 0, 1) is the lowest index
    assert tuple(positions[3, 0].tolist()) == (3, 3)
    assert colours[3, 0].tolist() == [0, 0, 1]
    # and the poison lands there: released class-k images carry ξ_k at p_k
    noise = _craft(_ctx_over(x, y, 5))
    released = release(x, y, noise)
    for k in range(5):
        (r, c), colour = tuple(positions[k, 0].tolist()), colours[k, 0]
        assert torch.equal(released[y == k, :, r, c], (colour * 255).to(torch.uint8).expand(int((y == k).sum()), 3))


def test_search_rejects_impossible_requests(monkeypatch):
    x, y = synthetic_batch(n_per_class=2, num_classes=2, size=2)
    with pytest.raises(ValueError, match="pixels must be in"):
        ops.search(x, y, 2, pixels=5)  # 2×2 images have 4 positions
    x1 = x[:, :1]  # one channel: 2 colours per position; 3 classes × 4 pixels need 12 pairs of the 8
    y3 = torch.tensor([0, 1, 2, 2])
    with pytest.raises(ValueError, match="no free"):
        ops.search(x1, y3, 3, pixels=4)
    with pytest.raises(ValueError, match="score must be"):
        ops.class_scores(x, "l2")
    monkeypatch.setattr(ops, "MAX_CLASS_SIZE", 1)  # beyond it the int64 moments could overflow: refused, not wrong
    with pytest.raises(ValueError, match="beyond the exact integer search"):
        ops.search(x, y, 2)


def test_a_class_without_images_gets_no_pixel():
    x, y = synthetic_batch(n_per_class=2, num_classes=3, size=4)
    keep = y != 1
    positions, _ = ops.search(x[keep], y[keep], 3)
    assert positions[1].tolist() == [[-1, -1]] and (positions[[0, 2]] >= 0).all()


# --- the noise ----------------------------------------------------------------------------


@pytest.mark.parametrize("pixels", [1, 3])
def test_delta_touches_exactly_the_chosen_pixels(pixels):
    ctx = make_ctx(n_per_class=3)
    noise = _craft(ctx, pixels=pixels)
    assert isinstance(noise, Noise) and noise.form == "sample"
    assert noise.delta.shape == ctx.x.shape and noise.delta.dtype == torch.float32
    assert noise.delta.device == ctx.x.device and torch.isfinite(noise.delta).all()
    positions = torch.tensor(noise.meta["positions"])  # K×P×2
    touched = _touched(noise.delta)
    expected = torch.zeros_like(touched)
    for i, k in enumerate(ctx.y.tolist()):
        for r, c in positions[k].tolist():
            expected[i, r, c] = True
    assert touched.sum((1, 2)).tolist() == [pixels] * len(ctx.y)  # random images: none already holds its target
    assert torch.equal(touched, expected)
    assert noise.norm == "l0" and noise.pixels == pixels and noise.meta["attack"] == "ops"


def test_poisoned_pixels_stay_in_range_and_land_on_the_target():
    ctx = make_ctx(n_per_class=3)
    noise = _craft(ctx)
    x = to_unit_float(ctx.x)
    unclamped = x + noise.delta
    assert unclamped.min() >= -1e-6 and unclamped.max() <= 1 + 1e-6  # δ itself keeps x + δ in [0, 1]
    poisoned = apply_noise(x, noise.delta)
    assert 0 <= poisoned.min() and poisoned.max() <= 1
    released = release(ctx.x, ctx.y, noise)  # what a data owner publishes: uint8
    floats = release(ctx.x, ctx.y, noise, quantize=False)
    assert 0 <= floats.min() and floats.max() <= 1
    touched = _touched(noise.delta).unsqueeze(1).expand_as(ctx.x)
    assert torch.equal(released[~touched], ctx.x[~touched])  # every other pixel is untouched, bit for bit
    colours = torch.tensor(noise.meta["colours"])  # K×P×C in {0, 1}
    positions = torch.tensor(noise.meta["positions"])
    rows, cols = positions[ctx.y, 0, 0], positions[ctx.y, 0, 1]
    at_pixel = released[torch.arange(len(ctx.y)), :, rows, cols]  # N×C
    assert torch.equal(at_pixel, (colours[ctx.y, 0] * 255).to(torch.uint8))


def test_noise_eps_is_the_true_max_and_passes_the_noise_file_check(tmp_path):
    """uebench validates a noise file against the budget it names (``load_noise``): OPS's noise
    is l0 with max |δ| as its eps; claiming the cell's ε, or fewer pixels, makes it invalid."""
    ctx = make_ctx(n_per_class=3)
    noise = _craft(ctx)
    assert noise.eps == noise.delta.abs().max().item()
    assert ctx.eps < noise.eps <= 1  # far outside the L∞ ball: OPS is L0
    save_noise(noise, tmp_path / "ops.pt")
    loaded = load_noise(tmp_path / "ops.pt")
    assert torch.equal(loaded.delta, noise.delta) and loaded.eps == noise.eps and loaded.form == "sample"
    assert loaded.meta["positions"] == noise.meta["positions"] and (loaded.norm, loaded.pixels) == ("l0", 1)
    save_noise(Noise(noise.delta, "sample", ctx.eps, noise.meta, norm="l0", pixels=1), tmp_path / "claims-eps.pt")
    with pytest.raises(NoiseFileError, match="exceed eps"):
        load_noise(tmp_path / "claims-eps.pt")
    two = _craft(ctx, pixels=2)
    save_noise(Noise(two.delta, "sample", two.eps, two.meta, norm="l0", pixels=1), tmp_path / "claims-one-pixel.pt")
    with pytest.raises(NoiseFileError, match="more than its l0 budget of 1"):
        load_noise(tmp_path / "claims-one-pixel.pt")


@pytest.mark.parametrize("score", ops.SCORES)
def test_same_inputs_same_noise_bytes_and_no_seed(score):
    first = _craft(make_ctx(n_per_class=3, seed=0), score=score)
    again = _craft(make_ctx(n_per_class=3, seed=0), score=score)
    assert first.delta.numpy().tobytes() == again.delta.numpy().tobytes()
    assert first.meta == again.meta and first.eps == again.eps
    other_seed = make_ctx(n_per_class=3, seed=0)
    other_seed.seed, other_seed.generator = 7, torch.Generator().manual_seed(7)
    assert _craft(other_seed, score=score).delta.numpy().tobytes() == first.delta.numpy().tobytes()


def test_options_are_declared_once_and_validated():
    described = {o["name"]: o for o in describe_options(OPS.Options)}
    assert described["pixels"]["default"] == 1 and described["pixels"]["type"] == "int"
    assert described["score"]["default"] == "l1" and described["score"]["choices"] == list(ops.SCORES)
    assert build_options(OPS.Options, {"pixels": "2", "score": "pooled"}) == OPS.Options(pixels=2, score="pooled")
    with pytest.raises(OptionError, match="pixels must be >= 1"):
        build_options(OPS.Options, {"pixels": "0"})
    with pytest.raises(OptionError, match="must be one of"):
        build_options(OPS.Options, {"score": "var"})
    assert OPS.name == "ops" and OPS.cacheable is False and OPS.__doc__.startswith("One-Pixel Shortcut")


# --- installed as an entry point ----------------------------------------------------------


def _pip(*args):
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-cache-dir"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _distribution():
    try:
        return importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        return None


def _owned(dist) -> bool:
    """Installed by this module (its INSTALLER file names the test suite, not pip)?"""
    return (dist.read_text("INSTALLER") or "").strip() == INSTALLER


def _claim(dist) -> None:
    """Name this module as the installer (``INSTALLER`` is in RECORD, so pip still removes it)."""
    installer = next(f for f in dist.files if f.name == "INSTALLER" and f.parent.name.endswith(".dist-info"))
    installer.locate().write_text(INSTALLER + "\n")


def _editable_wheel(out):
    """What ``pip install -e`` installs, assembled by hand: a ``.pth`` line putting the package's
    folder on ``sys.path`` and the metadata with the entry points read from its pyproject.toml."""
    entry_points = "[uebench]\n" + "".join(f"{name} = {value}\n" for name, value in ENTRY_POINTS.items())
    return build_wheel(out, DIST, VERSION, {f"__editable__.{DIST.replace('-', '_')}.pth": f"{PLUGIN_DIR}\n"}, entry_points)


@pytest.fixture(scope="module")
def installed_ops(tmp_path_factory):
    """The package installed for these tests, unless someone installed it on purpose."""
    dist = _distribution()
    if dist is not None and not _owned(dist):
        yield "found"  # a developer's or CI's install: use it, leave it
        return
    if dist is not None:  # left behind by an interrupted run of this module
        _pip("uninstall", "-y", DIST)
    flags = ("--no-deps", "--no-build-isolation", "--no-index")
    if can_build_from_source():
        result = _pip("install", *flags, "-e", str(PLUGIN_DIR))
    else:
        result = _pip("install", *flags, str(_editable_wheel(tmp_path_factory.mktemp("wheel"))))
    assert result.returncode == 0, result.stdout + result.stderr
    importlib.invalidate_caches()
    _claim(_distribution())
    try:
        yield "installed"
    finally:
        result = _pip("uninstall", "-y", DIST)
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()
        assert result.returncode == 0, result.stdout + result.stderr
        assert _distribution() is None


@pytest.fixture
def entry_point_env(installed_ops, monkeypatch):
    """This process started before the install, so its ``sys.path`` lacks what the editable
    install's ``.pth`` adds at interpreter start; add that folder (a fresh interpreter needs no
    help: ``test_fresh_interpreter_finds_the_installed_attack``)."""
    monkeypatch.delenv("UEBENCH_LOAD_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    sys.modules.pop(MODULE, None)
    yield
    sys.modules.pop(MODULE, None)


@pytest.mark.slow
def test_installed_package_declares_the_entry_point(installed_ops):
    dist = _distribution()
    assert dist.version == VERSION
    eps = [ep for ep in dist.entry_points if ep.group == "uebench"]
    assert [(ep.name, ep.value) for ep in eps] == [("ops", MODULE)] == list(ENTRY_POINTS.items())


@pytest.mark.slow
def test_entry_point_plugin_is_listed_with_its_attack(invoke, entry_point_env):
    info = {r["name"]: r for r in json_out(invoke("plugins", "--json"))}["ops"]
    assert info["source"] == "entry-point" and info["error"] is None
    assert info["module"] == MODULE and info["version"] == VERSION
    assert info["provides"] == {"attack": ["ops"]}
    assert info["path"] == str(PLUGIN_DIR / MODULE / "__init__.py")
    row = {r["name"]: r for r in json_out(invoke("attacks", "list", "--json"))}["ops"]
    assert row["plugin"] == "ops" and row["summary"].startswith("One-Pixel Shortcut")
    assert [o["name"] for o in row["options"]] == ["pixels", "score"]


@pytest.mark.slow
def test_fresh_interpreter_finds_the_installed_attack(installed_ops):
    code = "from uebench.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "attacks", "list", "--json"], capture_output=True, text=True,
                            timeout=300, cwd=REPO / "tests")  # not the repo root: nothing importable by accident
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["ops"]["plugin"] == "ops"


@pytest.mark.slow
def test_smoke_cell_with_the_entry_point_attack(invoke, entry_point_env, tmp_path, monkeypatch):
    """``uebench run --attack ops`` end to end; the released training set is caught on its way to
    training: every image differs from its clean original in at most ``pixels`` positions, each
    set to a corner colour (0 or 255 per channel)."""
    require_data()
    import uebench.poison

    caught = {}

    def catch(x, y, noise, mask=None, quantize=True):
        caught["x"], caught["noise"] = x.cpu(), noise
        caught["released"] = out = release(x, y, noise, mask, quantize)
        return out

    monkeypatch.setattr(uebench.poison, "release", catch)
    result = invoke("run", "--protocol", "smoke", "--json", "--attack", "ops", "-o", "pixels=2",
                    "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    row = json_out(result)
    assert row["attack"] == "ops" and json.loads(row["attack_options"]) == {"pixels": 2, "score": "l1"}
    assert row["noise_key"] == "" and row["noise_cached"] is False  # not cacheable: nothing stored
    assert row["norm"] == "l0:2" and row["l0_max_delta"] == caught["noise"].eps  # eps stays --eps, the key's
    assert row["eps"] == pytest.approx(8 / 255)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    x, released = caught["x"], caught["released"].cpu()
    changed = released.ne(x).any(1)  # N×H×W
    per_image = changed.sum((1, 2))
    assert per_image.max() <= 2 and (per_image == 2).float().mean() > 0.99
    values = released.permute(0, 2, 3, 1)[changed]  # the changed pixels' channels
    assert ((values == 0) | (values == 255)).all()
    assert caught["noise"].eps <= 1
