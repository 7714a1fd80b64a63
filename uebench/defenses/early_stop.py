"""Early stopping from the defender's side: keep the weights that do best on held-out data.

A defender holds only the (poisoned) training data, so the validation set is carved from it
*before* training (``val_fraction`` of the images, drawn with the cell's augment stream, removed
from training); after each epoch the model is scored on it — through every defense's
``eval_images``, as the test images are (beside a defense that blurs its test images, the
validation images are blurred too) — and when training ends the weights of the best epoch are restored: the row's
``final_test_acc`` is the test accuracy of those.
Against unlearnable data the poisoned validation images reward exactly the shortcut, so this
mostly picks late epochs.

``clean_val=true`` is the variant of the paper's Figure 1 argument: the held-out images are
*clean* originals (a defender with a few clean images of their own), which finds the early
epoch where class-wise random or error-maximizing noise has not yet taken over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl
from uebench.options import option


class EarlyStop(Defense):
    """Early stopping on a validation split carved from the training set; restores the best epoch's weights."""

    name = "early-stop"

    @dataclass
    class Options:
        val_fraction: float = option(0.1, help="fraction of the training images held out for validation, in (0, 1)")
        clean_val: bool = option(False, help="validate on the clean originals of the held-out images (Figure 1's point)")
        patience: int | None = option(None, help="stop after this many epochs without a better validation accuracy "
                                                 "(None: train all epochs)")

        def validate(self):
            if not 0 < self.val_fraction < 1:
                raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
            if self.patience is not None and self.patience < 1:
                raise ValueError(f"patience must be >= 1, got {self.patience}")

    def __init__(self, options=None):
        super().__init__(options)
        self.best_acc, self.best_epoch, self.best_weights = -1.0, 0, None

    def prepare(self, data, generator):
        count = max(1, int(round(self.options.val_fraction * len(data))))
        if count >= len(data):
            raise ValueError(f"val_fraction {self.options.val_fraction} leaves no training images out of {len(data)}")
        val_index = torch.randperm(len(data), generator=generator)[:count].to(data.y.device)
        return data.split(val_index, clean_val=self.options.clean_val)

    def after_epoch(self, state, control):
        acc = state.evaluate(state.data.x_val, state.data.y_val)
        state.log(val_acc=acc)
        if acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, state.epoch
            self.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        elif self.options.patience is not None and state.epoch - self.best_epoch >= self.options.patience:
            control.stop = True

    def after_fit(self, state, control):
        if self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)
            control.selected_epoch = self.best_epoch


@hookimpl
def register_defenses(register):
    register(EarlyStop)
