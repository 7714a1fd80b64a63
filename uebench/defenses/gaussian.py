"""Gaussian pre-processing baselines: blur (``gaussian``) and additive noise (``gaussian-noise``),
applied once to the training images before training.

``gaussian`` is APBench's baseline of that name (Qin et al., TMLR 2024, "APBench: A Unified
Benchmark for Availability Poisoning Attacks and Defenses", https://arxiv.org/abs/2308.03258;
code: lafeat/apbench): a Gaussian blur of every training image, to smooth away the fine,
high-frequency noise a shortcut poison relies on.  Test images are not blurred (as in APBench).
Options: ``kernel_size`` (odd, default 3, APBench's) and ``sigma`` (default 1.0).  APBench's code
blurs with ``transforms.GaussianBlur(3, sigma=0.1)``, whose neighbour weights are e^-50 of the
centre's: on 8-bit images that is the identity, so its "gaussian" rows measure no defense at all.
Our default σ = 1 is a blur that does something (weights 0.27 / 0.45 / 0.27 per axis);
``-o sigma=0.1`` reproduces APBench's setting.  The blur is torchvision.transforms.v2's batched
``gaussian_blur`` on uint8 (float releases are rounded to 8 bits first, as a saved image is;
reflect padding at the borders), on the data's device.

``gaussian-noise`` adds N(0, σ²) noise to every pixel once, drawn from the run's generator
(reproducible), then clamps to [0, 1]: the classic random-noise baseline — drowning a small
perturbation in a larger random one.  APBench itself ships the blur only.  Default σ = 8/255,
the scale of the L∞ budget of the poisons it is meant to mask; the result stays float (no
8-bit rounding, which would erase a σ below half a grey level).

Both are "prepare-once" defenses like the ISS squeezes (``uebench/defenses/squeeze.py``): the
defender processes every image they hold (training, validation split, clean originals).  The
``plugins/onefile/gaussian_blur.py`` example (``gaussian-blur``) stays as the example of a
third-party defense using the ``augment``/``eval_images`` events; this module is the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from uebench.defenses.base import Defense
from uebench.defenses.squeeze import Squeeze
from uebench.hookspecs import hookimpl
from uebench.options import option
from uebench.train.data import as_float


class GaussianBlur(Squeeze):
    """Blur every training image once with a Gaussian kernel (APBench's ``gaussian`` baseline)."""

    name = "gaussian"

    @dataclass
    class Options:
        kernel_size: int = option(3, help="side of the square Gaussian kernel in pixels, odd (APBench: 3)")
        sigma: float = option(1.0, help="standard deviation of the kernel in pixels (APBench's 0.1 is the identity on 8 bits)")

        def validate(self):
            if self.kernel_size < 1 or self.kernel_size % 2 == 0:
                raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
            if not self.sigma > 0:
                raise ValueError(f"sigma must be > 0, got {self.sigma}")

    def squeeze(self, x):
        o = self.options
        return TF.gaussian_blur(x, [o.kernel_size, o.kernel_size], [o.sigma, o.sigma])


class GaussianNoise(Defense):
    """Add Gaussian noise of std sigma to every training image once, then clamp to [0, 1]."""

    name = "gaussian-noise"

    @dataclass
    class Options:
        sigma: float = option(8 / 255, help="standard deviation of the noise on the [0, 1] pixel scale")

        def validate(self):
            if not self.sigma >= 0:
                raise ValueError(f"sigma must be >= 0, got {self.sigma}")

    def noisy(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = as_float(x)
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
        return (x + self.options.sigma * noise).clamp_(0, 1)

    def prepare(self, data, generator):
        return data.map_images(lambda x: self.noisy(x, generator))


@hookimpl
def register_defenses(register):
    register(GaussianBlur)
    register(GaussianNoise)
