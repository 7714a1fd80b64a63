"""Cutout (DeVries & Taylor 2017, https://arxiv.org/abs/1708.04552) as a defense (paper's Table 3).

Each image gets its own zeroed square (16 px at 32×32), centred anywhere in the image and
clipped at the border, as in the authors' code.  Built from one broadcast mask per batch:
``torchvision.transforms.v2.RandomErasing`` draws one box per call (per batch, not per image),
and kornia's ``RandomErasing`` draws area ratios rather than the paper's fixed square.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option


class Cutout(Defense):
    """Cutout: zero one random square per image (DeVries & Taylor 2017; 16 px on CIFAR)."""

    name = "cutout"

    @dataclass
    class Options:
        size: int = option(16, help="side of the zeroed square in pixels (paper: 16 at 32×32)")

        def validate(self):
            if self.size < 1:
                raise ValueError(f"size must be >= 1, got {self.size}")

    def augment(self, x, target, generator):
        n, _, h, w = x.shape
        cy = torch.randint(0, h, (n, 1, 1), generator=generator).to(x.device)
        cx = torch.randint(0, w, (n, 1, 1), generator=generator).to(x.device)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        half = self.options.size // 2
        inside = ((rows >= cy - half) & (rows < cy - half + self.options.size)
                  & (cols >= cx - half) & (cols < cx - half + self.options.size))
        return x * (~inside).unsqueeze(1).to(x.dtype), target


@hookimpl
def register_defenses(register):
    register(Cutout)
