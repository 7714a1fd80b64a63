"""Victim architectures: anything that builds an ``nn.Module`` mapping N×C×H×W → N×K logits."""

from __future__ import annotations

from torch import nn


class Victim:
    """Base class of victim plugins.  Subclasses set ``name`` and implement ``build``.

    ``takes_argument = True`` makes the victim addressable as ``name:argument`` (the argument
    is passed as ``self.argument``), e.g. ``timm:resnet18``.
    """

    name: str = ""
    takes_argument: bool = False
    Options = None

    def __init__(self, options=None, argument: str | None = None):
        self.options = options
        self.argument = argument

    @property
    def label(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name

    def check(self) -> None:
        """Raise ``OptionError`` if this victim cannot be built (e.g. an unknown model name) —
        called while a cell is prepared, so a typo costs seconds, not a crafting run."""

    def build(self, num_classes: int, image_shape: tuple[int, int, int]) -> nn.Module:
        raise NotImplementedError
