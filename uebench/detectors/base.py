"""The detector interface: a suspect set in, a :class:`Verdict` out.

A detector sees what a defender holds: the training images as released and their labels — and,
where the defender has them (a cell, or ``uebench detect --clean``), the clean originals, for
detectors that analyse the perturbation itself.  Its score grows with the evidence of poisoning;
``flagged`` is ``score > threshold``.  Every verdict says what its threshold was calibrated on,
because a threshold calibrated on one dataset at one scale says little about another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from uebench.progress import NULL_REPORTER, Reporter


@dataclass(frozen=True)
class SuspectSet:
    """A training set to judge: uint8 (or float in [0, 1]) N×C×H×W images, int64 labels."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    x_clean: torch.Tensor | None = None  # the originals, same order, where the defender has them
    description: str = ""

    def __post_init__(self):
        if self.x.dim() != 4 or len(self.x) != len(self.y):
            raise ValueError(f"a suspect set needs N×C×H×W images and N labels; got images {tuple(self.x.shape)}, "
                             f"labels {tuple(self.y.shape)}")
        if self.x_clean is not None and self.x_clean.shape != self.x.shape:
            raise ValueError(f"clean originals {tuple(self.x_clean.shape)} do not match the images {tuple(self.x.shape)}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Verdict:
    """A detector's answer: ``flagged`` = ``score > threshold``; ``details`` holds the numbers
    behind the score (e.g. each simple model's held-out accuracy)."""

    score: float
    threshold: float
    calibration: str
    inputs: str = "images"  # images | perturbation: what the detector looked at
    details: dict = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.score > self.threshold


class Detector:
    """Base class of detector plugins.  Subclasses set ``name`` (kebab-case), declare
    ``Options`` (a dataclass of :func:`uebench.api.option` fields, with a ``threshold``) and
    implement :meth:`detect`."""

    name: str = ""
    Options = None

    def __init__(self, options=None):
        self.options = options if options is not None else (self.Options() if self.Options else None)

    def detect(self, suspect: SuspectSet, generator: torch.Generator, device: torch.device,
               reporter: Reporter = NULL_REPORTER) -> Verdict:
        raise NotImplementedError
