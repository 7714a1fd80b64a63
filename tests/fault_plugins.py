"""Plugin files that misbehave on purpose, for the fault suite (loaded with ``--plugins-dir``)."""

FAULTY_PLUGIN = '''
"""Plugins that misbehave on purpose (uebench's fault suite)."""

import torch

from uebench.attacks.base import Attack
from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.noise import Noise


class Raises(Attack):
    name = "raises-attack"

    def craft(self, ctx):
        raise RuntimeError("the crafting server is on fire (test)")


class WrongShape(Attack):
    name = "wrong-shape"

    def craft(self, ctx):
        return Noise(torch.zeros(len(ctx.x) - 1, *ctx.x.shape[1:]), "sample", ctx.eps)


class NanNoise(Attack):
    name = "nan-noise"

    def craft(self, ctx):
        delta = torch.zeros(ctx.num_classes, *ctx.x.shape[1:])
        delta[3, 0, 5, 5] = float("nan")
        return Noise(delta, "class", ctx.eps)


class InfNoise(Attack):
    name = "inf-noise"

    def craft(self, ctx):
        return Noise(torch.full((ctx.num_classes, *ctx.x.shape[1:]), float("inf")), "class", ctx.eps)


class OutsideEps(Attack):
    name = "outside-eps"

    def craft(self, ctx):
        return Noise(torch.full((ctx.num_classes, *ctx.x.shape[1:]), 2 * ctx.eps), "class", ctx.eps)


class NotNoise(Attack):
    name = "not-noise"

    def craft(self, ctx):
        return torch.zeros(ctx.num_classes, *ctx.x.shape[1:])


class NanLoss(Defense):
    name = "nan-loss"

    def loss(self, model, x, target, generator=None):
        logits = model(x)
        return logits.float().sum() * float("nan"), logits


class RaisesInTraining(Defense):
    name = "raises-defense"

    def augment(self, x, target, generator):
        raise ValueError("this batch offends me (test)")


@hookimpl
def register_attacks(register):
    for cls in (Raises, WrongShape, NanNoise, InfNoise, OutsideEps, NotNoise):
        register(cls)


@hookimpl
def register_defenses(register):
    register(NanLoss)
    register(RaisesInTraining)
'''

BROKEN_AT_IMPORT = 'raise ImportError("No module named \'zzz_missing_dependency\' (test)")\n'


def write_plugins(folder, broken: bool = True):
    """Write ``faulty.py`` (and ``broken.py``, failing at import) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faulty.py").write_text(FAULTY_PLUGIN)
    if broken:
        (folder / "broken.py").write_text(BROKEN_AT_IMPORT)
    return folder
