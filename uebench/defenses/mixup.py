"""Mixup (Zhang et al., ICLR 2018, https://arxiv.org/abs/1710.09412) as a defense (paper's Table 3).

x ← λ·x + (1 − λ)·x[perm], target ← λ·target + (1 − λ)·target[perm], λ ~ Beta(α, α) once per
batch, as in the authors' code.  Written here rather than taken from
``torchvision.transforms.v2.MixUp``: that one takes integer labels only (so it cannot follow
another label-changing step) and draws from the global RNG instead of the cell's seeded stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.defenses.base import Defense
from uebench.defenses.cutmix import beta_sample
from uebench.hookspecs import hookimpl
from uebench.options import option


class MixUp(Defense):
    """Mixup: blend each image with a shuffled partner, labels in the same ratio (Zhang et al. 2018)."""

    name = "mixup"
    group = "label-mixing"

    @dataclass
    class Options:
        alpha: float = option(1.0, help="Beta(alpha, alpha) parameter of the mixing ratio (the paper's defense setting: 1.0)")

        def validate(self):
            if self.alpha <= 0:
                raise ValueError(f"alpha must be > 0, got {self.alpha}")

    def augment(self, x, target, generator):
        lam = beta_sample(self.options.alpha, generator)
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


@hookimpl
def register_defenses(register):
    register(MixUp)
