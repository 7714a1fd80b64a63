"""The data a training run holds: released training images, optional validation split, and
the clean originals (for the rare defense that models a defender holding some clean images)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from uebench.noise import to_unit_float


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] from uint8 or float images."""
    return to_unit_float(x) if x.dtype == torch.uint8 else x.float()


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels from uint8 or float-in-[0, 1] images (rounded, as an image file would store them)."""
    return x if x.dtype == torch.uint8 else x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class TrainData:
    """Everything a training run reads, on the compute device.

    ``x`` holds the training images as released: uint8 (the quantized release, the default) or
    float32 in [0, 1] (un-quantized noise; after a defense whose ``prepare`` declares
    ``keeps_pixel_range = False``, e.g. orthogonal projection, any finite float).  ``x_clean``
    are the same images before poisoning, in the same order.  ``x_val``/``y_val`` exist once a defense carved a validation split.
    Defenses never change a ``TrainData`` in place: ``prepare`` returns a new one.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    x_clean: torch.Tensor | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Float pixels in [0, 1] of training samples ``index``."""
        return as_float(self.x[index])

    def map_images(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TrainData:
        """Apply ``fn`` to every image tensor held (training, validation, clean originals): a
        defender who squeezes their data squeezes all of it."""
        return replace(
            self, x=fn(self.x),
            x_clean=fn(self.x_clean) if self.x_clean is not None else None,
            x_val=fn(self.x_val) if self.x_val is not None else None,
        )

    def split(self, val_index: torch.Tensor, clean_val: bool = False) -> TrainData:
        """Move the samples ``val_index`` out of training into the validation set — their
        released images, or their clean originals with ``clean_val``."""
        if self.x_val is not None:
            raise ValueError("a validation split was already carved from this training set")
        if clean_val and self.x_clean is None:
            raise ValueError("a clean validation set needs the clean training images (x_clean)")
        keep = torch.ones(len(self), dtype=torch.bool, device=self.y.device)
        keep[val_index] = False
        source = self.x_clean if clean_val else self.x
        return replace(
            self, x=self.x[keep], y=self.y[keep],
            x_clean=self.x_clean[keep] if self.x_clean is not None else None,
            x_val=source[val_index], y_val=self.y[val_index],
        )
