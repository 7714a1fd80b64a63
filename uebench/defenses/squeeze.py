"""Image Shortcut Squeezing (Liu et al., ICML 2023, https://arxiv.org/abs/2302.03416).

Squeeze the released training images once, before training, so that the fine-grained noise
a shortcut relies on is gone: ``jpeg`` (lossy compression, default quality 10), ``grayscale``
(ITU-R 601-2 luma, repeated over the 3 channels; test images are made grayscale too, or the
victim would see colour it never trained on) and ``bit-depth`` (keep the top ``bits`` bits of
each 8-bit pixel).  The defender squeezes every image they hold: training images, a carved
validation split, and the clean originals where a defense uses them.

All three are torchvision.transforms.v2 functionals on batched uint8 tensors (float input is
first rounded to 8 bits, which is what saving an image does anyway): ``jpeg`` encodes and
decodes through ``torchvision.io``'s libjpeg on the CPU, with no PIL round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option
from uebench.train.data import as_uint8

# torchvision.io's encoder takes a list of images; chunks bound the memory of one call.
JPEG_CHUNK = 4096


class Squeeze(Defense):
    """Base of the once-before-training squeezes: ``squeeze`` maps uint8 N×C×H×W to uint8."""

    def squeeze(self, x):
        raise NotImplementedError

    def prepare(self, data, generator):
        return data.map_images(lambda x: self.squeeze(as_uint8(x)))


class JPEG(Squeeze):
    """JPEG-compress every training image once (ISS; quality 10 by default)."""

    name = "jpeg"

    @dataclass
    class Options:
        quality: int = option(10, help="JPEG quality, 1-100 (ISS: 10)")

        def validate(self):
            if not 1 <= self.quality <= 100:
                raise ValueError(f"quality must be in 1..100, got {self.quality}")

    def squeeze(self, x):
        if not hasattr(TF, "jpeg"):  # torchvision < 0.20
            raise RuntimeError("the jpeg defense needs torchvision >= 0.20 (torchvision.transforms.v2.functional.jpeg)")
        # torchvision's codec runs on the CPU here whatever the device (its CUDA path returns
        # images on another device than it takes); once per training set, a few seconds at 50k
        parts = [TF.jpeg(x[s : s + JPEG_CHUNK].cpu(), self.options.quality) for s in range(0, len(x), JPEG_CHUNK)]
        return torch.cat(parts).to(x.device) if parts else x.clone()


class Grayscale(Squeeze):
    """Train and test on grayscale images (ISS; luma repeated over the colour channels)."""

    name = "grayscale"

    def squeeze(self, x):
        return TF.rgb_to_grayscale(x, num_output_channels=x.shape[1]) if x.shape[1] == 3 else x

    def eval_images(self, x):
        return TF.rgb_to_grayscale(x, num_output_channels=3) if x.shape[1] == 3 else x


class BitDepth(Squeeze):
    """Reduce every training image to a few bits per channel once (ISS bit-depth reduction)."""

    name = "bit-depth"

    @dataclass
    class Options:
        bits: int = option(2, help="bits kept per 8-bit channel, 1-8 (low bits are zeroed, torchvision's posterize)")

        def validate(self):
            if not 1 <= self.bits <= 8:
                raise ValueError(f"bits must be in 1..8, got {self.bits}")

    def squeeze(self, x):
        return TF.posterize(x, self.options.bits)


@hookimpl
def register_defenses(register):
    register(JPEG)
    register(Grayscale)
    register(BitDepth)
