"""UEraser (Qin et al. 2023, "Learning the Unlearnable: Adversarial Augmentations Suppress
Unlearnable Example Attacks", https://arxiv.org/abs/2303.15127; code: lafeat/ueraser, and
APBench's ``defense/ueraser.py``).

Each batch is augmented with strong random augmentations — kornia's plasma brightness and
plasma contrast (fractal noise, per image), a random channel shuffle and TrivialAugment, the
authors' pipeline.  During the *adversarial* epochs the batch is augmented ``repeats`` times and
the model trains on the **per-sample maximum loss** over the copies ("adversarial
augmentation"): the worst view of each image is the one that the noise shortcut explains least.
After them, each batch is augmented once and trained on plainly (one forward pass).

The paper's three variants are one schedule, ``adversarial_epochs`` (E):

===================  ==========================  ===========================================
variant              options                     cost
===================  ==========================  ===========================================
UEraser-Lite         ``adversarial_epochs=0``    one augmented view a batch: standard cost
                     (or ``repeats=1``)
UEraser              ``adversarial_epochs=E``    ``repeats``× for the first E epochs, then 1×
                     (paper: 50 of 200 epochs)
UEraser-Max          ``adversarial_epochs``      ``repeats``× on every epoch (APBench's
                     unset (None, the default)   default ``--repeat_epoch 300`` of 300)
===================  ==========================  ===========================================

The default stays UEraser-**Max** (max over 5 views on every epoch; an earlier docstring here
called it UEraser-Lite, which is the paper's name for the variant *without* the max), so rows
written before the option existed keep their keys (a ``None`` option is not part of a cell key)
and their meaning; the row's ``defense_options`` shows ``"adversarial_epochs": null`` for Max, the
epoch count otherwise.  At the ``cpu`` protocol's 24 epochs the paper's 50/200 ratio is
``-o adversarial_epochs=6``.  The per-epoch curve's ``ueraser_views`` column says how many views
each epoch took.

kornia draws each image's parameters separately and runs on any device; it draws from torch's
global RNG, so each batch's draws run under a fork of it seeded from the cell's augment stream
(reproducible, and the global state is left untouched).  The loss hook does not see the epoch:
the defense counts finished epochs in ``after_epoch`` (reset in ``prepare``).
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
    """UEraser: train on the max loss over several strong kornia augmentations of each image (Qin et al. 2023)."""

    name = "ueraser"

    @dataclass
    class Options:
        repeats: int = option(5, help="augmented copies per image; the loss is the per-sample maximum over them")
        adversarial_epochs: int | None = option(
            None, help="epochs with the max-over-repeats loss, then one augmented view a batch: 0 = UEraser-Lite, "
                       "E = UEraser (paper: 50 of 200), unset = every epoch (UEraser-Max)")

        def validate(self):
            if self.repeats < 1:
                raise ValueError(f"repeats must be >= 1, got {self.repeats}")
            if self.adversarial_epochs is not None and self.adversarial_epochs < 0:
                raise ValueError(f"adversarial_epochs must be >= 0, got {self.adversarial_epochs}")

    def __init__(self, options=None):
        super().__init__(options)
        self.pipeline = None
        self.epochs_done = 0  # finished epochs of the current run (the loss hook does not see the epoch)

    def views_now(self) -> int:
        """Augmented views (forward passes) a batch takes in the current epoch."""
        e = self.options.adversarial_epochs
        return self.options.repeats if e is None or self.epochs_done < e else 1

    def prepare(self, data, generator):
        self.epochs_done = 0
        return data

    def after_epoch(self, state, control):
        state.log(ueraser_views=self.views_now())  # the curve shows the schedule: repeats, then 1
        self.epochs_done = state.epoch

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
        for _ in range(self.views_now()):
            out = model(self.views(x, generator).contiguous(memory_format=layout))
            per_view.append(F.cross_entropy(out.float(), target, reduction="none"))
            logits = out if logits is None else logits
        return torch.stack(per_view).max(0).values.mean(), logits


@hookimpl
def register_defenses(register):
    register(UEraser)
