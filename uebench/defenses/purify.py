"""Purification defenses that bring their own model: the base class :class:`Purifier`.

A purifier maps each released training image to a "clean-looking" one with a model of its own,
once, before training — e.g. AVATAR (Dolatabadi et al., SaTML 2024, "The Devil's Advocate:
Shattering the Illusion of Unexploitable Data using Diffusion Models",
https://arxiv.org/abs/2303.08500): diffuse every image part of the way with Gaussian noise, then
denoise it with a diffusion model pretrained on clean data, so the poison's fine structure is
washed out and the image's content comes back.  Such a model cannot be downloaded here and is
no part of uebench; a purifier is therefore a plugin that ships (or locates) its model and
implements two methods:

===========================================  ====================================================
``load(device) -> model``                    once per run, before any image is purified: build
                                             or read the model (a ``torch.nn.Module`` or any
                                             callable) and put it on ``device``.  Where weights
                                             come from is the plugin's business (a path option,
                                             an environment variable, a file beside the plugin)
``purify(model, x) -> x``                    one batch: ``x`` float32 N×C×H×W in [0, 1] on the
                                             device → purified images of the same shape; called
                                             under ``torch.no_grad()``, draws its randomness from
                                             the ``generator`` argument
===========================================  ====================================================

The base class does the rest in ``prepare``: loads the model once, runs ``purify`` in batches of
``batch_size`` over every image the defender holds (training images, a carved validation split,
clean originals; ``TrainData.map_images``) with one progress bar, clamps the result to [0, 1]
and stores it as float32 (no 8-bit rounding; ``as_uint8`` would give what saving it does).
Test images are not purified (AVATAR purifies the training set).  A minimal plugin file::

    import torch.nn.functional as F
    from uebench.api import Purifier, hookimpl

    class Blocky(Purifier):
        '''2× average-pool then nearest upsample (a toy purifier).'''
        name = "blocky"

        def load(self, device):
            return lambda x: F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0)

        def purify(self, model, x, generator):
            return model(x)

    @hookimpl
    def register_defenses(register):
        register(Blocky)

Load it with ``uebench --plugins-dir DIR run ... --defense blocky``.  An AVATAR plugin reads its
checkpoint in ``load`` (e.g. from ``-o checkpoint=PATH``) and runs the forward diffusion to its
``t*`` and the reverse sampler in ``purify``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from uebench.defenses.base import Defense
from uebench.train.data import as_float


class Purifier(Defense):
    """Base of purification defenses: subclasses implement ``load(device)`` and ``purify(model, x, generator)``."""

    batch_size: int = 256  # images a ``purify`` call gets; a subclass with a large model sets fewer

    def load(self, device: torch.device) -> Any:
        """The purification model (a module or any callable), on ``device``; called once per run."""
        raise NotImplementedError(f"{type(self).__name__} must implement load(device)")

    def purify(self, model: Any, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Purified float images (same shape as ``x``: float32 N×C×H×W in [0, 1], on ``model``'s device)."""
        raise NotImplementedError(f"{type(self).__name__} must implement purify(model, x, generator)")

    def prepare(self, data, generator):
        held = [t for t in (data.x, data.x_val, data.x_clean) if t is not None]
        total = sum(math.ceil(len(t) / self.batch_size) for t in held)
        bar = self.reporter.task(f"purifying ({self.name})", total=total)
        model = self.load(data.x.device)

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            parts = []
            for first in range(0, len(x), self.batch_size):
                batch = as_float(x[first : first + self.batch_size])
                out = self.purify(model, batch, generator)
                if out.shape != batch.shape:
                    raise ValueError(f"purifier {self.name!r} returned shape {tuple(out.shape)} for a batch of "
                                     f"{tuple(batch.shape)}; purify must keep the shape")
                if not torch.isfinite(out).all():
                    raise ValueError(f"purifier {self.name!r} returned non-finite pixels")
                parts.append(out.float().clamp_(0, 1))
                bar.update(1)
            return torch.cat(parts) if parts else as_float(x)

        try:
            return data.map_images(run)
        finally:
            bar.close()
