"""UEraser-Lite (Qin et al. 2023, "Learning the Unlearnable: Adversarial Augmentations Suppress
Unlearnable Example Attacks", https://arxiv.org/abs/2303.15127).

Each batch is augmented ``repeats`` times with strong random augmentations — kornia's plasma
brightness and plasma contrast (fractal noise, per image), a random channel shuffle and
TrivialAugment, the authors' pipeline — and the model trains on the **per-sample maximum loss**
over the copies ("adversarial augmentation"): the worst view of each image is the one that the
noise shortcut explains least.  kornia draws each image's parameters separately and runs on any
device; it draws from torch's global RNG, so each batch's draws run under a fork of it seeded
from the cell's augment stream (reproducible, and the global state is left untouched).
Cost: ``repeats`` forward/backward passes a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option
from uebench.seeds import seed_global


def ueraser_pipeline():
    """The authors' augmentation sequence (kornia), built on first use."""
    try:
        import kornia.augmentation as K
    except ImportError as exc:  # pragma: no cover - kornia is a dependency; a stripped env may lack it
        raise RuntimeError("the ueraser defense needs kornia (pip install kornia)") from exc
    return K.AugmentationSequential(
        K.RandomPlasmaBrightness(roughness=(0.1, 0.7), intensity=(0.0, 1.0), same_on_batch=False, p=1.0, keepdim=True),
        K.RandomPlasmaContrast(roughness=(0.1, 0.7), p=1.0),
        K.RandomChannelShuffle(same_on_batch=False, p=0.5, keepdim=True),
        K.auto.TrivialAugment(),
    )


class UEraser(Defense):
    """UEraser-Lite: train on the max loss over several strong kornia augmentations of each image (Qin et al. 2023)."""

    name = "ueraser"

    @dataclass
    class Options:
        repeats: int = option(5, help="augmented copies per image; the loss is the per-sample maximum over them")

        def validate(self):
            if self.repeats < 1:
                raise ValueError(f"repeats must be >= 1, got {self.repeats}")

    def __init__(self, options=None):
        super().__init__(options)
        self.pipeline = None

    def views(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One strongly augmented copy of the batch ``x``."""
        if self.pipeline is None:
            self.pipeline = ueraser_pipeline().to(x.device)
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            seed_global(seed)  # kornia draws from torch's global generator
            return self.pipeline(x.float()).clamp_(0, 1)

    def loss(self, model, x, target, generator=None):
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        per_view, logits = [], None
        for _ in range(self.options.repeats):
            out = model(self.views(x, generator).contiguous(memory_format=layout))
            per_view.append(F.cross_entropy(out.float(), target, reduction="none"))
            logits = out if logits is None else logits
        return torch.stack(per_view).max(0).values.mean(), logits


@hookimpl
def register_defenses(register):
    register(UEraser)
