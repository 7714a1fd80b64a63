"""A one-off uebench plugin file: load it with ``uebench --plugins-dir plugins/onefile ...``.

``grayscale`` is a defense from the literature on shortcut noise (Liu et al., "Image Shortcut
Squeezing", ICML 2023): training on grayscale images removes colour-channel shortcuts.
"""

from __future__ import annotations

from uebench.defenses.base import Defense
from uebench.hookspecs import hookimpl


class Grayscale(Defense):
    """Train on grayscale copies of the images (ITU-R 601 luma, repeated over 3 channels)."""

    name = "grayscale"

    def augment(self, x, target, generator):
        if x.shape[1] != 3:
            return x, target
        weights = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        luma = (x * weights).sum(1, keepdim=True)
        return luma.expand_as(x).contiguous(), target


@hookimpl
def register_defenses(register):
    register(Grayscale)
