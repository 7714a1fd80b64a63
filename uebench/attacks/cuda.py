"""CUDA: convolution-based unlearnable datasets (Sadasivan, Soltanolkotabi & Feizi, CVPR 2023).

Paper: "CUDA: Convolution-based Unlearnable Datasets", https://arxiv.org/abs/2303.04278.
Written from the paper's description (the authors' code is under a licence that forbids
copying; none of it was read or used).

Mechanism: model-free.  One random ``filter_size`` × ``filter_size`` filter per class is drawn
from the cell's seed stream (the paper's "private key"), and every training image of class k is
replaced by its convolution with filter k — a class-wise blur, so that a network learns to tell
the blurs (the filters) apart instead of the images' content.  A filter is built like this,
controlled by the blur parameter p_b (``blur``) — the construction as the paper's text was
summarised for this module; only the paper's abstract could be read from here, so the exact
recipe (centre weight, normalisation, one filter per channel or per image) awaits a check
against its Section 3, and ``revision`` must be bumped if it changes:

- the centre entry is 1, every other entry is drawn uniformly from [0, p_b];
- the filter is divided by the sum of its entries, so it is non-negative and sums to 1: each
  output pixel is a weighted mean of input pixels and stays in [0, 1] (the result is still
  clamped to [0, 1]).

So p_b = 0 gives the identity filter (no change at all), and a larger p_b moves more of each
filter's mass off the centre, a stronger blur; with the same seed the off-centre entries
(relative to the centre) scale exactly with p_b.  The convolution is per channel (depthwise: no
mixing of colour channels), zero-padded so the image keeps its size, and is computed as
``torch.nn.functional.conv2d`` does (cross-correlation, the deep-learning convention; for i.i.d.
random filters the same distribution as a flipped convolution), batched: one grouped conv over
a chunk of images, each image's group weighted by its class's filter, no per-image loop.
``channels="shared"`` (default) applies the class's one filter to every channel;
``channels="separate"`` draws an independent filter per class *and* channel.

Norm: not Lp-bounded.  The released image is T(x) itself, returned as a sample-wise ``Noise``
with ``norm="transform"``: δ = T(x) − x on x as float in [0, 1], ``eps`` = the largest |δ|
(≤ 1); ``--eps`` is ignored.  ``noise.meta["filters"]`` holds the filters (K × C' × k × k,
C' = 1 shared or C separate), as applied.

Defaults: ``filter_size`` = 3 and ``blur`` = 0.3, the CIFAR-10 setting (0.3 is what the
CIFAR-10 example command of the authors' README passes as ``--blur-parameter``; 3×3 filters are
the paper's CIFAR size as this module's brief gives it).  Nothing is
scaled for the CPU protocols: crafting trains no model and costs one small convolution per
image at every protocol.

Not cached (``cacheable = False``): a sample-wise δ is N×C×H×W float32 (61 MB for the ``cpu``
protocol's 5,000 CIFAR images, 614 MB for all 50,000), while recomputing it is one depthwise
3×3 convolution over the set — about 0.4 s for 5,000 CIFAR images on one CPU thread, 6 s for
50,000 — so writing, hashing and re-reading a cache entry would cost more than crafting again,
and the result is fully determined by the seed and the options anyway.

Example: ``uebench run --attack cuda``, ``uebench run --attack cuda -o blur=0.5 -o filter_size=5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from uebench.attacks.base import Attack, CraftContext
from uebench.hookspecs import hookimpl
from uebench.noise import Noise, to_unit_float
from uebench.options import option

CHANNELS = ("shared", "separate")
CHUNK = 2048  # images per grouped convolution (bounds the float copies held at once)


def class_filters(num_classes: int, channels: int, size: int, blur: float, generator: torch.Generator) -> torch.Tensor:
    """The K × ``channels`` × size × size filters (float32, CPU): centre 1, the other entries
    uniform in [0, ``blur``], each filter divided by its sum.  Drawn as one
    ``torch.rand((K, channels, size, size), generator=generator)`` scaled by ``blur``."""
    filters = torch.rand((num_classes, channels, size, size), generator=generator, dtype=torch.float32) * blur
    filters[:, :, size // 2, size // 2] = 1.0
    return filters / filters.sum(dim=(2, 3), keepdim=True)


def convolve(x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` (float n×C×H×W) convolved per channel with its own filter
    (``filters``: n×C'×k×k, C' = 1 or C), zero-padded to keep H×W, clamped to [0, 1]."""
    n, c, h, w = x.shape
    k = filters.shape[-1]
    weight = filters.expand(n, c, k, k).reshape(n * c, 1, k, k)
    out = F.conv2d(x.reshape(1, n * c, h, w), weight.to(x.dtype), padding=k // 2, groups=n * c)
    return out.reshape(n, c, h, w).clamp_(0.0, 1.0)


class CUDA(Attack):
    """Convolution-based unlearnable dataset: each class's images blurred by its own random filter (Sadasivan et al. 2023)."""

    name = "cuda"
    cacheable = False  # recomputing takes a second; a sample-wise δ is 61 MB per 5,000 CIFAR images (module docstring)

    @dataclass
    class Options:
        filter_size: int = option(3, help="k: each class's filter is k×k, k odd (paper, CIFAR-10: 3)")
        blur: float = option(0.3, help="p_b in [0, 1]: off-centre filter entries uniform in [0, p_b] against a centre of 1, "
                                       "then normalised to sum 1; 0 = no change (paper, CIFAR-10: 0.3)")
        channels: str = option("shared", help="shared: one filter per class for every channel; separate: one per class "
                                              "and channel", choices=CHANNELS)

        def validate(self):
            if self.filter_size < 1 or self.filter_size % 2 == 0:
                raise ValueError(f"filter_size must be an odd number >= 1 (a filter with a centre), got {self.filter_size}")
            if not 0 <= self.blur <= 1:
                raise ValueError(f"blur must be in [0, 1], got {self.blur}")

    def craft(self, ctx: CraftContext) -> Noise:
        o = self.resolved(ctx)
        channels = ctx.x.shape[1] if o.channels == "separate" else 1
        filters = class_filters(ctx.num_classes, channels, o.filter_size, o.blur, ctx.generator)
        on_device = filters.to(ctx.device)
        delta = torch.empty(ctx.x.shape, dtype=torch.float32, device=ctx.device)
        bar = ctx.reporter.task("crafting CUDA (class-wise convolution)", total=-(-len(ctx.y) // CHUNK))
        for start in range(0, len(ctx.y), CHUNK):
            s = slice(start, start + CHUNK)
            x = to_unit_float(ctx.x[s].to(ctx.device))
            delta[s] = convolve(x, on_device[ctx.y[s].to(ctx.device)]) - x
            bar.update(1)
        bar.close()
        largest = float(delta.abs().max().item()) if delta.numel() else 0.0
        meta = {"attack": self.name, "filter_size": o.filter_size, "blur": o.blur, "channels": o.channels,
                "filters": filters.tolist()}
        return Noise(delta, "sample", min(largest, 1.0), meta, norm="transform")


@hookimpl
def register_attacks(register):
    register(CUDA)
