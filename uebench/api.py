"""What a uebench plugin may import: the stable surface for plugin authors.

Everything a plugin needs is here, under these names, and a plugin that imports only from
``uebench.api`` keeps working when uebench's modules move (``tests/test_api.py`` holds the
example plugins in ``plugins/`` to that).  Names are added here, never renamed or removed
without a release note; the classes may gain attributes and methods, and :class:`CraftContext`
gains fields, which is why it is keyword-only.  Anything imported from another ``uebench``
module is internal and may change under a plugin.

The hooks themselves, with their reference documentation, are in ``uebench.hookspecs``;
implement them with :data:`hookimpl`::

    from dataclasses import dataclass

    import torch

    from uebench.api import Attack, Noise, hookimpl, option

    class Flat(Attack):
        '''Class-wise constant +ε noise.'''
        name = "flat"

        @dataclass
        class Options:
            sign: float = option(1.0, help="+1 or -1")

        def craft(self, ctx):
            delta = ctx.eps * self.options.sign * torch.ones(ctx.num_classes, *ctx.x.shape[1:])
            return Noise(delta.to(ctx.device), "class", ctx.eps, {"attack": self.name})

    @hookimpl
    def register_attacks(register):
        register(Flat)

==================  ===============================================================================
attacks             :class:`Attack` (subclass it), :class:`CraftContext` (what ``craft`` gets),
                    :class:`Noise` (what it returns), :func:`to_unit_float` (uint8 → [0, 1])
defenses            :class:`Defense` (callbacks on the training loop's events), :class:`TrainData`
                    (what ``prepare`` gets and returns), :class:`TrainState` / :class:`TrainControl`
                    (what ``after_epoch`` / ``after_fit`` read and answer through),
                    :class:`Purifier` (a defense that brings its own model: ``load`` + ``purify``)
victims             :class:`Victim` (``build(num_classes, image_shape) -> nn.Module``)
detectors           :class:`Detector` (subclass it), :class:`SuspectSet` (what ``detect`` gets),
                    :class:`Verdict` (what it returns: score, threshold, calibration)
datasets            :class:`Dataset`, :class:`ImageData` (what ``load`` returns); the cache-layout
                    writers :func:`write_layout` (arrays) and :func:`write_splits` (torchvision-style
                    splits) for ``download``
every plugin        :func:`option` (a declared option: default, help, choices), :data:`hookimpl`
==================  ===============================================================================
"""

from __future__ import annotations

from uebench.attacks.base import Attack, CraftContext
from uebench.datasets.base import Dataset, ImageData, write_layout, write_splits
from uebench.defenses.base import Defense
from uebench.defenses.purify import Purifier
from uebench.detectors.base import Detector, SuspectSet, Verdict
from uebench.hookspecs import hookimpl
from uebench.noise import Noise, to_unit_float
from uebench.options import option
from uebench.train.data import TrainData
from uebench.train.events import TrainControl, TrainState
from uebench.victims.base import Victim

__all__ = [
    "Attack",
    "CraftContext",
    "Dataset",
    "Defense",
    "Detector",
    "ImageData",
    "Noise",
    "Purifier",
    "SuspectSet",
    "TrainControl",
    "TrainData",
    "TrainState",
    "Verdict",
    "Victim",
    "hookimpl",
    "option",
    "to_unit_float",
    "write_layout",
    "write_splits",
]
