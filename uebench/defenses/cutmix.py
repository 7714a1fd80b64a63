"""CutMix (Yun et al., ICCV 2019, https://arxiv.org/abs/1905.04899) as a defense."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option


class CutMix(Defense):
    """CutMix: paste a random box from a shuffled partner image, mix labels by area (paper's Table 3)."""

    name = "cutmix"
    group = "label-mixing"

    @dataclass
    class Options:
        alpha: float = option(1.0, help="Beta(alpha, alpha) parameter of the mixing ratio")
        prob: float = option(1.0, help="probability of applying CutMix to a batch")

        def validate(self):
            if self.alpha <= 0:
                raise ValueError(f"alpha must be > 0, got {self.alpha}")
            if not 0 <= self.prob <= 1:
                raise ValueError(f"prob must be in [0, 1], got {self.prob}")

    def augment(self, x, target, generator):
        opts = self.options
        if torch.rand((), generator=generator).item() >= opts.prob:
            return x, target
        n, _, h, w = x.shape
        lam = beta_sample(opts.alpha, generator)
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy = int(torch.randint(0, h, (), generator=generator))
        cx = int(torch.randint(0, w, (), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        perm = torch.randperm(n, generator=generator).to(x.device)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the ratio actually pasted, after clipping
        return x, kept * target + (1.0 - kept) * target[perm]


def beta_sample(alpha: float, generator: torch.Generator) -> float:
    """Beta(alpha, alpha) from two seeded Gamma draws (torch.distributions cannot take a generator)."""
    a = torch._standard_gamma(torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator)
    return float(a[0] / a.sum())


@hookimpl
def register_defenses(register):
    register(CutMix)
