"""Baselines: ``none`` (clean data) and ``random`` (uniform noise in [-ε, ε], the paper's control)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.attacks.base import Attack
from uebench.attacks.patches import paste_everywhere
from uebench.hookspecs import hookimpl
from uebench.noise import FORMS, Noise
from uebench.options import option


class NoAttack(Attack):
    """No noise: the clean baseline every other row is compared with."""

    name = "none"
    cacheable = False

    def craft(self, ctx):
        return None


class RandomNoise(Attack):
    """Uniform random noise in [-ε, ε], per sample (Δs) or per class (Δc) — Huang et al. 2021, Fig. 1."""

    name = "random"
    cacheable = False
    inapplicable_when_none = ("patch",)

    @dataclass
    class Options:
        form: str = option("sample", help="sample: one δ per image (Δs); class: one δ per class (Δc)", choices=FORMS)
        patch: int | None = option(None, help="p: a p×p patch of noise pasted at a random place of each image (Table 5)")

        def validate(self):
            if self.patch is not None and self.patch < 1:
                raise ValueError(f"patch must be >= 1 (pixels), got {self.patch}")

    def craft(self, ctx):
        o = self.options
        rows = len(ctx.y) if o.form == "sample" else ctx.num_classes
        channels, height, width = ctx.x.shape[1:]
        side = (o.patch, o.patch) if o.patch is not None else (height, width)
        delta = ((torch.rand((rows, channels, *side), generator=ctx.generator) * 2 - 1) * ctx.eps).to(ctx.device)
        if o.patch is None:
            return Noise(delta, o.form, ctx.eps, {"attack": self.name})
        full = paste_everywhere(delta, ctx.y, o.form, height, width, ctx.generator)
        return Noise(full, "sample", ctx.eps, {"attack": self.name, "patch": o.patch, "crafted_form": o.form})


@hookimpl
def register_attacks(register):
    register(NoAttack)
    register(RandomNoise)
