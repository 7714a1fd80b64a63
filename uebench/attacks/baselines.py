"""Baselines: ``none`` (clean data) and ``random`` (uniform noise in [-ε, ε], the paper's control)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.attacks.base import Attack
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

    @dataclass
    class Options:
        form: str = option("sample", help="sample: one δ per image (Δs); class: one δ per class (Δc)", choices=FORMS)

    def craft(self, ctx):
        rows = len(ctx.y) if self.options.form == "sample" else ctx.num_classes
        shape = (rows, *ctx.x.shape[1:])
        delta = (torch.rand(shape, generator=ctx.generator) * 2 - 1) * ctx.eps
        return Noise(delta.to(ctx.device), self.options.form, ctx.eps, {"attack": self.name})


@hookimpl
def register_attacks(register):
    register(NoAttack)
    register(RandomNoise)
