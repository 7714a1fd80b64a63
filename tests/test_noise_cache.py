"""Noise: how δ is applied (add in float, then clamp), looked up, stored and cached."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import synthetic_batch
from uebench.craft.cache import NoiseCache, default_cache_dir, noise_key
from uebench.noise import Noise, NoiseFileError, apply_noise, load_noise, save_noise, to_unit_float
from uebench.poison import poison_mask, release

EPS = 8 / 255


# --- apply_noise --------------------------------------------------------------------------


def test_apply_noise_adds_in_float_then_clamps():
    x = torch.tensor([1.0, 0.99, 0.0, 0.5, 0.01, 1.0]).view(1, 1, 1, 6)
    d = torch.tensor([EPS, -EPS, -EPS, EPS, -EPS, -EPS]).view(1, 1, 1, 6)
    out = apply_noise(x, d).flatten()
    expected = torch.tensor([1.0, 0.99 - EPS, 0.0, 0.5 + EPS, 0.0, 1.0 - EPS])
    assert torch.allclose(out, expected, atol=1e-7)
    assert out[0].item() == 1.0  # saturated pixel stays at 1.0 (clamp after add)
    assert out[1].item() == pytest.approx(0.99 - EPS, abs=1e-7)  # not clamp-then-add artefacts
    # clamp-then-add would give 1 + ε for the first pixel: it must never leave [0, 1]
    assert 0.0 <= out.min().item() and out.max().item() <= 1.0


def test_apply_noise_random_stays_in_range_and_does_not_touch_input():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 8, 8, generator=g)
    x[:, :, 0] = 1.0
    x[:, :, 1] = 0.0
    before = x.clone()
    d = (torch.rand(4, 3, 8, 8, generator=g) * 2 - 1) * EPS
    out = apply_noise(x, d)
    assert torch.equal(x, before)
    assert out.min() >= 0 and out.max() <= 1
    inside = ((x + d) >= 0) & ((x + d) <= 1)
    assert torch.allclose(out[inside], (x + d)[inside])


def test_apply_noise_keeps_dtype():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    out = apply_noise(x, torch.full((2, 3, 4, 4), EPS))
    assert out.dtype == torch.float64


def test_apply_noise_rejects_uint8():
    with pytest.raises(TypeError, match="uint8"):
        apply_noise(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.zeros(1, 3, 2, 2))


def test_to_unit_float():
    x = torch.tensor([0, 128, 255], dtype=torch.uint8)
    out = to_unit_float(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.tensor([0.0, 128 / 255, 1.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_unit_float_leaves_a_float_input_unchanged(dtype):
    """``.to(dtype)`` returns the input itself when the dtype already matches, so the division
    must not be in place."""
    x = torch.tensor([0.0, 128.0, 255.0], dtype=dtype)
    before = x.clone()
    out = to_unit_float(x, dtype=dtype)
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr()
    assert torch.allclose(out, before / 255.0)


# --- Noise --------------------------------------------------------------------------------


def test_classwise_for_batch_looks_up_by_label():
    delta = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 3, 2, 2).contiguous()
    noise = Noise(delta, "class", EPS)
    index = torch.tensor([0, 1, 2, 3])
    labels = torch.tensor([2, 2, 0, 1])
    out = noise.for_batch(index, labels)
    assert out.shape == (4, 3, 2, 2)
    assert out[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0, 1.0]


def test_samplewise_for_batch_looks_up_by_index():
    delta = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 3, 2, 2).contiguous()
    noise = Noise(delta, "sample", EPS)
    out = noise.for_batch(torch.tensor([4, 0, 3]), torch.tensor([0, 0, 0]))
    assert out[:, 0, 0, 0].tolist() == [4.0, 0.0, 3.0]


def test_noise_validates_form_and_shape():
    with pytest.raises(ValueError, match="form"):
        Noise(torch.zeros(1, 3, 2, 2), "pixel", EPS)
    with pytest.raises(ValueError, match="4-D"):
        Noise(torch.zeros(3, 2, 2), "sample", EPS)


# --- release: the poisoned training set a data owner publishes ------------------------------


def test_release_float_partial_mask_leaves_clean_samples_exact():
    x, y = synthetic_batch(n_per_class=2, num_classes=3, size=8)
    n = len(y)
    delta = torch.full((n, 3, 8, 8), EPS)
    delta[::2] = -EPS
    mask = torch.tensor([True, False, False, True, True, False])
    out = release(x, y, Noise(delta, "sample", EPS), mask, quantize=False)
    clean = x.float() / 255
    assert out.dtype == torch.float32 and out.shape == x.shape
    for i in range(n):
        if mask[i]:
            assert torch.allclose(out[i], (clean[i] + delta[i]).clamp(0, 1))
            assert not torch.equal(out[i], clean[i])
        else:
            assert torch.equal(out[i], clean[i])  # exactly x / 255, bit for bit


def test_release_quantizes_once_to_uint8():
    """round(255 · clamp(x + δ, 0, 1)): sub-pixel noise rounds away, a full 8/255 step stays."""
    x, y = synthetic_batch(n_per_class=2, num_classes=3, size=8)
    delta = torch.stack([torch.full((3, 8, 8), v) for v in (EPS, -EPS, 0.4 / 255)])
    out = release(x, y, Noise(delta, "class", EPS))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    expected = ((x.float() / 255 + delta[y]).clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(out, expected)
    assert torch.equal(out[y == 2], x[y == 2])  # 0.4/255 is below half a grey level: released as is
    assert torch.equal(out[y == 0].int(), (x[y == 0].int() + 8).clamp(max=255))
    assert torch.equal(release(x, y, None), x) and torch.equal(release(x, y, None, quantize=False), x.float() / 255)


def test_release_chunks_match_one_pass(monkeypatch):
    from uebench import poison

    x, y = synthetic_batch(n_per_class=5, num_classes=3, size=8)
    delta = (torch.rand(len(y), 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1) * EPS
    whole = release(x, y, Noise(delta, "sample", EPS))
    monkeypatch.setattr(poison, "CHUNK", 4)
    assert torch.equal(release(x, y, Noise(delta, "sample", EPS)), whole)


def test_poison_mask_counts_and_seeds():
    y = torch.arange(10) % 5
    assert poison_mask(y, 1.0, torch.Generator()) is None
    mask = poison_mask(y, 0.3, torch.Generator().manual_seed(1))
    assert mask.dtype == torch.bool and int(mask.sum()) == 3
    assert torch.equal(mask, poison_mask(y, 0.3, torch.Generator().manual_seed(1)))
    assert int(poison_mask(y, 0.0, torch.Generator()).sum()) == 0


def test_poison_mask_by_class():
    y = torch.arange(20) % 5
    mask = poison_mask(y, 1.0, torch.Generator(), classes=(2, 4))
    assert torch.equal(mask, (y == 2) | (y == 4))
    half = poison_mask(y, 0.5, torch.Generator().manual_seed(0), classes=(2,))
    assert int(half.sum()) == 2 and bool((y[half] == 2).all())


def test_resolve_classes_by_name_or_index_with_a_clear_error():
    from uebench.options import OptionError
    from uebench.poison import resolve_classes

    names = ("airplane", "automobile", "bird", "cat")
    assert resolve_classes(["bird", "0", "cat", "bird"], names) == (0, 2, 3)
    with pytest.raises(OptionError, match=r"unknown class 'brid'\. Did you mean 'bird'\?.*2=bird"):
        resolve_classes(["brid"], names)
    with pytest.raises(OptionError, match="unknown class '7'"):
        resolve_classes(["7"], names)


# --- save / load --------------------------------------------------------------------------


def _noise(rows=4, form="sample", scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    delta = (torch.rand(rows, 3, 4, 4, generator=g) * 2 - 1) * EPS * scale
    return Noise(delta, form, EPS, {"attack": "test", "history": [{"iteration": 1, "error": 0.5}]})


def test_save_load_round_trip(tmp_path):
    noise = _noise()
    save_noise(noise, tmp_path / "sub" / "n.pt")
    back = load_noise(tmp_path / "sub" / "n.pt", expect={"attack": "test"})
    assert torch.equal(back.delta, noise.delta)
    assert back.form == "sample" and back.eps == pytest.approx(EPS)
    assert back.meta == {"attack": "test", "history": [{"iteration": 1, "error": 0.5}]}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["n.pt"]  # no temp files left


class _Evil:
    """An arbitrary class: unpickling it would mean running code from the cache file."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.faults
def test_load_refuses_pickled_code(tmp_path):
    torch.save({"delta": torch.zeros(1, 3, 2, 2), "meta": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(NoiseFileError, match="cannot read"):
        load_noise(tmp_path / "evil.pt")


@pytest.mark.faults
def test_load_rejects_shape_mismatch_and_nonfinite(tmp_path):
    noise = _noise()
    noise.delta[0, 0, 0, 0] = float("nan")
    save_noise(noise, tmp_path / "nan.pt")
    with pytest.raises(NoiseFileError, match="not finite"):
        load_noise(tmp_path / "nan.pt")
    torch.save({"delta": torch.zeros(2, 3, 4, 4), "meta": '{"form": "sample", "eps": 0.1, "shape": [3, 3, 4, 4]}'},
               tmp_path / "shape.pt")
    with pytest.raises(NoiseFileError, match="shape"):
        load_noise(tmp_path / "shape.pt")


# --- NoiseCache ---------------------------------------------------------------------------


def test_cache_put_get_round_trip(tmp_path):
    cache = NoiseCache(tmp_path / "c")
    assert cache.get("k1") == (None, "miss")
    noise = _noise(form="class", rows=10)
    path = cache.put("k1", noise)
    assert path == tmp_path / "c" / "k1.pt" and path.is_file()
    hit, why = cache.get("k1", shape=(500, 3, 4, 4))
    assert why is None
    assert torch.equal(hit.delta, noise.delta) and hit.form == "class"
    assert hit.meta["key"] == "k1" and hit.meta["attack"] == "test"
    assert not list((tmp_path / "c").glob("*.tmp"))


@pytest.mark.faults
@pytest.mark.parametrize("garbage", [b"", b"not a torch file at all", None])
def test_cache_corrupt_file_is_a_miss_with_reason_and_removed(tmp_path, garbage):
    cache = NoiseCache(tmp_path)
    cache.put("k", _noise())
    path = cache.path("k")
    if garbage is None:  # a truncated write
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(garbage)
    noise, why = cache.get("k")
    assert noise is None
    assert why != "miss" and "cannot read" in why and str(path) in why
    assert not path.exists()
    assert cache.get("k") == (None, "miss")


@pytest.mark.faults
def test_cache_rejects_a_file_with_another_key(tmp_path):
    cache = NoiseCache(tmp_path)
    cache.put("other", _noise())
    os.replace(cache.path("other"), cache.path("wanted"))
    noise, why = cache.get("wanted")
    assert noise is None
    assert "key='other'" in why and "'wanted'" in why
    assert not cache.path("wanted").exists()


@pytest.mark.faults
def test_cache_rejects_delta_outside_eps(tmp_path):
    cache = NoiseCache(tmp_path)
    cache.put("k", _noise(scale=2.0))  # |δ| up to 2ε while the file says eps=ε
    noise, why = cache.get("k")
    assert noise is None and "exceed eps" in why
    assert not cache.path("k").exists()


@pytest.mark.faults
def test_cache_rejects_another_image_shape(tmp_path):
    cache = NoiseCache(tmp_path)
    cache.put("k", _noise())
    noise, why = cache.get("k", shape=(4, 3, 32, 32))
    assert noise is None and "image shape" in why
    assert not cache.path("k").exists()


def test_cache_lock_path(tmp_path):
    cache = NoiseCache(tmp_path / "new")
    lock = cache.lock("abc")
    assert lock.lock_file == str(tmp_path / "new" / "abc.pt.lock")
    with lock:
        assert lock.is_locked


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("UEBENCH_CACHE", str(tmp_path / "u"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "u"
    assert NoiseCache().folder == tmp_path / "u"
    monkeypatch.delenv("UEBENCH_CACHE")
    assert default_cache_dir() == tmp_path / "x" / "uebench" / "noise"


def test_noise_key_is_stable_and_sensitive():
    a = {"attack": "errmin-pgd", "options": {"steps": 20, "form": "sample"}, "seed": 0, "eps": 8 / 255}
    b = {"seed": 0, "eps": 8 / 255, "options": {"form": "sample", "steps": 20}, "attack": "errmin-pgd"}
    assert noise_key(a) == noise_key(b)
    assert len(noise_key(a)) == 20 and all(c in "0123456789abcdef" for c in noise_key(a))
    assert noise_key(a) != noise_key(dict(a, seed=1))
    assert noise_key(a) != noise_key(dict(a, options={"steps": 19, "form": "sample"}))
