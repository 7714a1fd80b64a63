"""What a defense sees of a training run and how it steers it (the loop is in ``loop.py``).

The loop calls a defense's hooks at fixed events (see :class:`uebench.defenses.base.Defense`).
At the per-epoch and end-of-fit events a defense gets a :class:`TrainState` to read and a
:class:`TrainControl` to answer through — the Hugging Face ``TrainerState``/``TrainerControl``
split: a defense never needs the optimizer or the loop's locals to ask for a stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from uebench.train.data import TrainData


@dataclass
class TrainState:
    """The run as a defense may read it: the model being trained, the data after every defense's
    ``prepare``, the epoch just finished and the per-epoch rows so far."""

    model: torch.nn.Module
    data: TrainData
    epochs: int
    device: torch.device
    # (images, labels) → accuracy in [0, 1], in eval mode, on the images after every defense's
    # ``eval_images`` (as the test set is scored: a validation split is seen as test images are)
    evaluate: Callable[[torch.Tensor, torch.Tensor], float]
    epoch: int = 0
    history: list[dict] = field(default_factory=list)

    def log(self, **values) -> None:
        """Add columns to the current epoch's row (they land in the per-epoch curve CSV)."""
        self.history[-1].update(values)


@dataclass
class TrainControl:
    """A defense's answers: ``stop`` ends training after this epoch; ``selected_epoch`` says
    which epoch's weights the model holds after ``after_fit`` (set by a defense that restored
    earlier weights; the row's ``final_test_acc`` is then measured on those weights)."""

    stop: bool = False
    selected_epoch: int | None = None
