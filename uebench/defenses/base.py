"""Training-time defenses: callbacks on the training loop's events (``uebench.train.loop``).

A defense implements only the hooks it needs; the base class is the identity (standard
training: random crop + flip, which every defense also gets).  The loop calls them at these
events, each defense in the order the user listed them (``--defense jpeg --defense cutmix``):

==========================================  ====================================================
``prepare(data, generator) -> TrainData``   once, before training: squeeze the released training
                                            images, carve a validation split (return a new
                                            ``TrainData``; never change it in place)
``augment(x, target, generator)``           each batch, after crop + flip: new images (float,
                                            N×C×H×W in [0, 1]) and soft targets (N×K)
``loss(model, x, target, generator)``       the batch's training loss and logits (adversarial
                                            training, max-over-augmentations).  At most one
                                            defense of a cell may replace it
``after_epoch(state, control)``             after each epoch's test evaluation: read
                                            ``TrainState``, log columns, keep weights, set
                                            ``control.stop``
``after_fit(state, control)``               once: e.g. restore kept weights and set
                                            ``control.selected_epoch``
``eval_images(x) -> x``                     images before every evaluation: the test set each
                                            epoch and at the end, and what a defense scores
                                            through ``TrainState.evaluate`` (early stopping's
                                            validation split); for a defense that changes what
                                            images look like, e.g. grayscale
==========================================  ====================================================

``group`` names a family whose members do not compose (see ``uebench.defenses.compose``).
All hooks work on tensors on the training device, batched: no PIL, no per-image Python loop.
``reporter`` is the run's :class:`uebench.progress.Reporter`, set by the loop before
``prepare``: a defense whose ``prepare`` takes more than seconds (a purifier, a fitted
projection) draws its progress bar there.  ``keeps_pixel_range`` is False for a defense whose
``prepare`` returns float images outside [0, 1] on purpose (``orthogonal-projection``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from uebench.progress import NULL_REPORTER

if TYPE_CHECKING:  # the loop imports this module; only type checkers need these names here
    from uebench.train.data import TrainData
    from uebench.train.events import TrainControl, TrainState


class Defense:
    """Base class of defense plugins: the identity (standard augmentation only)."""

    name: str = ""
    Options = None
    group: str | None = None
    keeps_pixel_range: bool = True  # prepare's float images stay in [0, 1]
    reporter = NULL_REPORTER  # the loop sets the run's reporter before prepare

    def __init__(self, options=None):
        self.options = options if options is not None else (self.Options() if self.Options else None)

    def prepare(self, data: TrainData, generator: torch.Generator) -> TrainData:
        return data

    def augment(self, x: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return x, target

    def loss(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, logits) for a batch with soft targets: cross-entropy by default."""
        logits = model(x)
        return F.cross_entropy(logits.float(), target), logits

    def after_epoch(self, state: TrainState, control: TrainControl) -> None:
        pass

    def after_fit(self, state: TrainState, control: TrainControl) -> None:
        pass

    def eval_images(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @classmethod
    def replaces_loss(cls) -> bool:
        return cls.loss is not Defense.loss


def loss_owner(defenses) -> Defense:
    """The defense whose ``loss`` the loop calls: the one that replaces it, else the default."""
    owners = [d for d in defenses if d.replaces_loss()]
    if len(owners) > 1:
        raise ValueError(f"defenses {', '.join(d.name for d in owners)} each replace the training loss; a cell takes one")
    return owners[0] if owners else Defense()
