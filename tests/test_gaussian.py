"""``gaussian`` (APBench's blur baseline) and ``gaussian-noise``: once-before-training transforms of
every held image; the blur is torchvision's and removes high frequencies, the noise has the asked
standard deviation and is a function of the generator."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from conftest import synthetic_batch
from uebench.options import OptionError, build_options
from uebench.plugins import get_host
from uebench.train import TrainData


def make(name, **options):
    cls = get_host().defenses.get(name).cls
    return cls(cls.Options(**options))


def high_frequency_energy(x: torch.Tensor) -> float:
    """Energy of the outer half of the 2-D spectrum (per channel), mean over images."""
    spectrum = torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1)).abs() ** 2
    h, w = x.shape[-2:]
    fy, fx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    outer = (fy.abs() > h // 4) | (fx.abs() > w // 4)
    return spectrum[..., outer].sum().item() / len(x)


def test_gaussian_blur_is_torchvisions_blur_of_every_held_image():
    x, y = synthetic_batch(n_per_class=4, num_classes=4, size=16)
    clean = torch.flip(x, dims=(0,))
    data = TrainData(x, y, 4, x_clean=clean, x_val=x[:3], y_val=y[:3])
    out = make("gaussian", kernel_size=5, sigma=1.5).prepare(data, torch.Generator())
    for got, source in ((out.x, x), (out.x_clean, clean), (out.x_val, x[:3])):
        assert got.dtype == torch.uint8
        assert torch.equal(got, TF.gaussian_blur(source, [5, 5], [1.5, 1.5]))
    # a float release is rounded to 8 bits first, as a saved image is
    floats = make("gaussian", kernel_size=5, sigma=1.5).prepare(TrainData(x.float() / 255, y, 4), torch.Generator()).x
    assert torch.equal(floats, out.x)


def test_gaussian_blur_removes_high_frequencies_and_the_default_blurs():
    x, y = synthetic_batch(n_per_class=4, num_classes=4, size=32)  # white noise: energy at every frequency
    before = high_frequency_energy(x)
    default = make("gaussian").prepare(TrainData(x, y, 4), torch.Generator()).x
    stronger = make("gaussian", kernel_size=7, sigma=2.0).prepare(TrainData(x, y, 4), torch.Generator()).x
    assert high_frequency_energy(default) < 0.5 * before
    assert high_frequency_energy(stronger) < high_frequency_energy(default)
    # APBench's own setting (3×3, σ=0.1) is the identity on 8-bit images, which the docstring says
    apbench = make("gaussian", kernel_size=3, sigma=0.1).prepare(TrainData(x, y, 4), torch.Generator()).x
    assert torch.equal(apbench, x)


@pytest.mark.parametrize(("values", "message"), [({"kernel_size": "4"}, "odd"), ({"sigma": "0"}, "sigma must be > 0")])
def test_gaussian_rejects_bad_options(values, message):
    cls = get_host().defenses.get("gaussian").cls
    with pytest.raises(OptionError, match=message):
        build_options(cls.Options, values, "defense 'gaussian'")


def test_gaussian_noise_has_the_asked_std_and_is_a_function_of_the_generator():
    x = torch.full((64, 3, 16, 16), 0.5)  # far from 0 and 1: nothing is clamped at σ = 0.02
    y = torch.arange(64) % 4
    data = TrainData(x, y, 4, x_clean=x.clone())
    out = make("gaussian-noise", sigma=0.02).prepare(data, torch.Generator().manual_seed(0))
    noise = out.x - x
    assert out.x.dtype == torch.float32
    assert noise.std().item() == pytest.approx(0.02, rel=0.02)
    assert abs(noise.mean().item()) < 1e-3
    assert not torch.equal(out.x, out.x_clean)  # each held tensor gets its own draw
    again = make("gaussian-noise", sigma=0.02).prepare(data, torch.Generator().manual_seed(0))
    other = make("gaussian-noise", sigma=0.02).prepare(data, torch.Generator().manual_seed(1))
    assert torch.equal(out.x, again.x) and torch.equal(out.x_clean, again.x_clean)
    assert not torch.equal(out.x, other.x)


def test_gaussian_noise_clamps_to_the_pixel_range_and_reads_uint8():
    x, y = synthetic_batch(n_per_class=4, num_classes=4, size=8)
    out = make("gaussian-noise", sigma=0.5).prepare(TrainData(x, y, 4), torch.Generator().manual_seed(0)).x
    assert out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert (out == 0).any() and (out == 1).any()  # a large σ does reach the bounds, and stops there
    default = make("gaussian-noise").prepare(TrainData(x, y, 4), torch.Generator().manual_seed(0)).x
    assert (default - x.float() / 255).abs().max() > 0
