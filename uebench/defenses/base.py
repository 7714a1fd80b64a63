"""Training-time defenses: they see each (already poisoned, already crop+flipped) batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Defense:
    """Base class of defense plugins: the identity (standard augmentation only).

    ``augment`` may rewrite a batch and its soft targets (N×K probabilities); ``loss`` may
    replace the training loss (adversarial training overrides this one).
    """

    name: str = ""
    Options = None

    def __init__(self, options=None):
        self.options = options

    def augment(self, x: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return x, target

    def loss(self, model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, logits) for a batch with soft targets."""
        logits = model(x)
        return F.cross_entropy(logits.float(), target), logits
