"""Batched, on-device augmentation of image tensors (no PIL, no per-image Python loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None,
                     hflip: bool = True) -> torch.Tensor:
    """The standard CIFAR augmentation on a batch: zero-pad, random crop back, random h-flip
    (``hflip=False`` for datasets whose images must not be mirrored, e.g. digits; the flips are
    drawn either way, so the crops of one seed do not depend on it).

    Each image gets its own offset and flip; the crop is a gather over a padded batch, so the
    cost is one pad and one indexing op whatever the batch size.
    """
    n, _, h, w = x.shape
    dev = x.device
    # drawn where the generator lives: a CPU generator (the CPU stream every committed row used)
    # draws on the CPU; a generator on the GPU draws there, with no host-to-device copy per step
    drawn_on = generator.device if generator is not None else torch.device("cpu")
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=drawn_on).to(dev)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=drawn_on).to(dev)
    flip = (torch.rand(n, generator=generator, device=drawn_on).to(dev) < 0.5) & hflip
    rows = (torch.arange(h, device=dev)[None, :] + dy[:, None])  # n × h
    cols = torch.arange(w, device=dev)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]  # n × w
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # n × h × w × c
    return out.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: channels_last at no cost
