"""Class-wise checkerboard noise: a model-free shortcut, the simplest availability poison.

Each class k gets a ±ε checkerboard whose cell size and phase depend on k, so the label is
linearly decodable from the noise alone (cf. Yu et al., "Availability Attacks Create
Shortcuts", KDD 2022).  It exists to show a third-party attack end to end: declare options once,
register through the public hook, get ``--attack checkerboard -o cell=2`` for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uebench.api import Attack, Noise, hookimpl, option


class Checkerboard(Attack):
    """Class-wise ±ε checkerboards (cell size and phase per class): model-free shortcut noise."""

    name = "checkerboard"
    cacheable = False  # cheaper to redo than to store

    @dataclass
    class Options:
        cell: int = option(1, help="smallest checkerboard cell size in pixels; class k uses cell·(1 + k // 4)")

        def validate(self):
            if self.cell < 1:
                raise ValueError(f"cell must be >= 1, got {self.cell}")

    def craft(self, ctx):
        c, h, w = ctx.x.shape[1:]
        rows = torch.arange(h).view(h, 1)
        cols = torch.arange(w).view(1, w)
        patterns = []
        for k in range(ctx.num_classes):
            size = self.options.cell * (1 + k // 4)
            phase = k % 4
            board = (((rows + phase // 2) // size + (cols + phase % 2) // size) % 2) * 2 - 1  # ±1
            patterns.append(board.float().expand(c, h, w))
        delta = torch.stack(patterns) * ctx.eps
        return Noise(delta.to(ctx.device), "class", ctx.eps, {"attack": self.name})


@hookimpl
def register_attacks(register):
    register(Checkerboard)
