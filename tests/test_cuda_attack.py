"""CUDA (Sadasivan et al., CVPR 2023): one random blur filter per class, applied to every image
of the class.  The properties that define it, on tiny synthetic inputs: each class's images are
exactly conv(x, filter_k) clamped (recomputed here independently of the attack's own code path),
classes get different filters, the released pixels are T(x) in [0, 1], the filters come from the
seed alone, and the blur parameter p_b controls the filters as the paper describes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import make_ctx
from uebench.attacks.cuda import CUDA
from uebench.noise import Noise, budget_violation
from uebench.options import OptionError, build_options
from uebench.poison import release


def _craft(seed=0, n_per_class=3, num_classes=4, **options) -> tuple:
    ctx = make_ctx(n_per_class=n_per_class, num_classes=num_classes, seed=seed)
    attack = CUDA(build_options(CUDA.Options, options))
    return ctx, attack.craft(ctx)


def _filters(noise: Noise) -> torch.Tensor:
    return torch.tensor(noise.meta["filters"], dtype=torch.float32)


def _reference(image: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """conv(x, f) for one float C×H×W image, channel by channel, zero padding, clamped — written
    without the attack's grouped-convolution reshaping."""
    k = filt.shape[-1]
    out = []
    for c in range(image.shape[0]):
        f = filt[c] if filt.shape[0] > 1 else filt[0]
        out.append(F.conv2d(image[c][None, None], f[None, None], padding=k // 2)[0, 0])
    return torch.stack(out).clamp(0, 1)


@pytest.mark.parametrize("channels", ["shared", "separate"])
def test_every_image_is_its_class_filter_applied_and_the_released_pixels_are_that(channels):
    ctx, noise = _craft(channels=channels)
    assert noise.form == "sample" and noise.norm == "transform" and noise.budget_label == "transform"
    assert noise.delta.shape == ctx.x.shape and noise.delta.dtype == torch.float32
    filters = _filters(noise)
    assert filters.shape == (ctx.num_classes, 3 if channels == "separate" else 1, 3, 3)
    x = ctx.x.float() / 255
    expected = torch.stack([_reference(x[i], filters[ctx.y[i]]) for i in range(len(ctx.y))])
    assert torch.allclose(x + noise.delta, expected, atol=1e-6)
    released = release(ctx.x, ctx.y, noise, quantize=False)
    assert torch.allclose(released, expected, atol=1e-6)
    assert 0 <= released.min() and released.max() <= 1
    assert torch.equal(release(ctx.x, ctx.y, noise), expected.mul(255).round().to(torch.uint8))  # the uint8 release too
    assert noise.eps == pytest.approx(noise.delta.abs().max().item()) and 0 < noise.eps <= 1
    assert budget_violation(noise.delta, noise.eps, noise.norm) is None


def test_the_filters_differ_per_class_and_an_image_is_not_transformed_by_another_class_filter():
    ctx, noise = _craft(num_classes=4)
    filters = _filters(noise)
    for a in range(4):
        for b in range(a + 1, 4):
            assert (filters[a] - filters[b]).abs().max() > 1e-3, (a, b)
    # the same image under two labels: two different outputs, each its own class's filter
    image = ctx.x[:1].repeat(4, 1, 1, 1)
    labels = torch.arange(4)
    twin = make_ctx(n_per_class=1, num_classes=4)
    twin.x, twin.y = image, labels
    outs = twin.x.float() / 255 + CUDA().craft(twin).delta
    for a in range(4):
        for b in range(4):
            if a != b:
                assert (outs[a] - outs[b]).abs().max() > 1e-3
                assert (outs[a] - _reference(image[a].float() / 255, filters[b])).abs().max() > 1e-3
    # in the crafted set: images of class a are not what class b's filter would make of them
    x = ctx.x.float() / 255
    for i in range(len(ctx.y)):
        other = (int(ctx.y[i]) + 1) % 4
        assert (x[i] + noise.delta[i] - _reference(x[i], filters[other])).abs().max() > 1e-3


def test_a_filter_has_a_centre_of_weight_one_against_off_centre_entries_up_to_blur_and_sums_to_one():
    _, noise = _craft(blur=0.3, filter_size=5)
    filters = _filters(noise)
    assert filters.shape[-2:] == (5, 5)
    assert torch.allclose(filters.sum(dim=(2, 3)), torch.ones(filters.shape[:2]), atol=1e-6)
    assert (filters >= 0).all()
    ratio = filters / filters[..., 2:3, 2:3]  # entries relative to the centre: uniform in [0, p_b] off the centre
    off = torch.ones(5, 5, dtype=torch.bool)
    off[2, 2] = False
    assert ratio[..., off].max() <= 0.3 + 1e-6 and ratio[..., off].min() >= 0
    assert ratio[..., off].std() > 0.03  # random, not a constant box


def test_same_seed_same_bytes_another_seed_other_filters():
    _, a = _craft(seed=0)
    _, b = _craft(seed=0)
    assert torch.equal(a.delta, b.delta) and a.meta["filters"] == b.meta["filters"]
    _, c = _craft(seed=1)
    assert (_filters(a) - _filters(c)).abs().max() > 1e-3


def test_the_filters_are_derived_from_the_generator_as_documented():
    """Re-derived here from the same seed: one draw of K×C'×k×k uniforms scaled by p_b, centre 1,
    each filter normalised to sum 1."""
    ctx, noise = _craft(seed=3, blur=0.4, channels="separate")
    raw = torch.rand((ctx.num_classes, 3, 3, 3), generator=torch.Generator().manual_seed(3)) * 0.4
    raw[:, :, 1, 1] = 1.0
    assert torch.allclose(_filters(noise), raw / raw.sum(dim=(2, 3), keepdim=True), atol=1e-7)


def test_blur_zero_is_the_identity_and_a_larger_blur_moves_mass_off_the_centre():
    ctx, none = _craft(blur=0.0)
    identity = torch.zeros(3, 3)
    identity[1, 1] = 1
    assert all(torch.equal(f[0], identity) for f in _filters(none))
    assert torch.equal(none.delta, torch.zeros_like(none.delta)) and none.eps == 0
    assert torch.equal(release(ctx.x, ctx.y, none), ctx.x)  # p_b = 0: the clean images
    filters = {p: _filters(_craft(blur=p)[1]) for p in (0.1, 0.3, 0.6)}
    centre = {p: f[..., 1, 1] for p, f in filters.items()}
    assert (centre[0.1] > centre[0.3]).all() and (centre[0.3] > centre[0.6]).all()  # more blur, less centre
    # same seed, same uniforms: the off-centre entries relative to the centre scale exactly with p_b
    off = torch.ones(3, 3, dtype=torch.bool)
    off[1, 1] = False
    rel = {p: (f / f[..., 1:2, 1:2])[..., off] for p, f in filters.items()}
    assert torch.allclose(rel[0.6], 2 * rel[0.3], atol=1e-5) and torch.allclose(rel[0.3], 3 * rel[0.1], atol=1e-5)
    # and the images change more: the mean |δ| grows with p_b
    change = [_craft(blur=p)[1].delta.abs().mean().item() for p in (0.1, 0.3, 0.6)]
    assert change[0] < change[1] < change[2]


def test_the_options_are_checked():
    for bad in ({"filter_size": 4}, {"filter_size": 0}, {"blur": -0.1}, {"blur": 1.5}, {"channels": "mixed"}):
        with pytest.raises(OptionError):
            build_options(CUDA.Options, bad)


def test_it_runs_on_another_image_shape_and_class_count():
    """Grayscale 1×8×8 images, 7 classes, images in an unsorted order: still each class's filter."""
    g = torch.Generator().manual_seed(5)
    ctx = make_ctx(n_per_class=2, num_classes=7)
    ctx.y = torch.randperm(14, generator=g) % 7
    ctx.x = torch.randint(0, 256, (14, 1, 8, 8), generator=g, dtype=torch.uint8)
    noise = CUDA().craft(ctx)
    filters = _filters(noise)
    x = ctx.x.float() / 255
    for i in range(14):
        assert torch.allclose(x[i] + noise.delta[i], _reference(x[i], filters[ctx.y[i]]), atol=1e-6)
