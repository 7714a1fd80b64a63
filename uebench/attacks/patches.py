"""Patch noise (the seed paper's Table 5): a p×p δ pasted at a random place of each image.

While crafting, a patch lands at a fresh random place every time it is used (model steps and
each perturbation pass); the released noise pastes it at one random place per training image,
so what is cached is an ordinary sample-wise N×C×H×W noise, zero outside each image's patch.
"""

from __future__ import annotations

import torch


class PatchPlacer:
    """Pastes p×p patches into H×W images at random places (one per image, drawn with
    ``generator``) and reads the patches back from the same places; batched gathers/scatters."""

    def __init__(self, size: int, height: int, width: int, generator: torch.Generator):
        if not 1 <= size <= min(height, width):
            raise ValueError(f"patch size {size} does not fit {height}×{width} images (allowed: 1..{min(height, width)})")
        self.size, self.height, self.width, self.generator = size, height, width, generator

    def place(self, patches: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(full N×C×H×W tensor, zero outside each patch; where each patch went)."""
        n, c, p, _ = patches.shape
        dev = patches.device
        top = torch.randint(0, self.height - p + 1, (n,), generator=self.generator).to(dev)
        left = torch.randint(0, self.width - p + 1, (n,), generator=self.generator).to(dev)
        span = torch.arange(p, device=dev)
        where = (torch.arange(n, device=dev)[:, None, None], (top[:, None] + span)[:, :, None],
                 (left[:, None] + span)[:, None, :])
        full = torch.zeros(n, self.height, self.width, c, dtype=patches.dtype, device=dev)
        full[where] = patches.permute(0, 2, 3, 1)
        return full.permute(0, 3, 1, 2), where

    @staticmethod
    def take(full: torch.Tensor, where: tuple) -> torch.Tensor:
        """The N×C×p×p patches at ``where`` (from :meth:`place`) of a full N×C×H×W tensor."""
        return full.permute(0, 2, 3, 1)[where].permute(0, 3, 1, 2)

    @staticmethod
    def mask(full_shape, where, device) -> torch.Tensor:
        """1 inside each image's patch, 0 elsewhere (N×1×H×W)."""
        n, _, h, w = full_shape
        m = torch.zeros(n, h, w, 1, device=device)
        m[where] = 1.0
        return m.permute(0, 3, 1, 2)


def paste_everywhere(rows: torch.Tensor, labels: torch.Tensor, form: str, height: int, width: int,
                     generator: torch.Generator, chunk: int = 4096) -> torch.Tensor:
    """The released sample-wise noise: each image's patch (its own row for ``form="sample"``,
    its class's for ``"class"``) pasted at one random place; N×C×H×W."""
    placer = PatchPlacer(rows.shape[-1], height, width, generator)
    parts = []
    for start in range(0, len(labels), chunk):
        index = torch.arange(start, min(start + chunk, len(labels)), device=rows.device)
        patches = rows[labels[index]] if form == "class" else rows[index]
        parts.append(placer.place(patches)[0])
    return torch.cat(parts)
