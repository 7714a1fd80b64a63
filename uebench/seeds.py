"""Independent random streams for one cell, all derived from the run's seed.

A cell draws randomness for five jobs.  Seeding each with ``seed + k`` (as uebench once did) makes
streams of different seeds collide: seed s's victim started from the same weights as seed
s + 2's source model.  ``numpy.random.SeedSequence(seed).spawn`` gives statistically independent
children instead, and adding a stream later does not change the existing ones.

uebench's own draws take one of these streams as an explicit generator; torch's *global*
generator is seeded (with :func:`seed_global`) only for the draws uebench cannot hand one to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# The order is part of the contract: child k of SeedSequence(seed) is always stream STREAMS[k].
STREAMS = ("craft", "poison", "init", "order", "augment")


@dataclass(frozen=True)
class SeedStreams:
    """One 63-bit seed per job: ``craft`` (noise and the source model's init), ``poison`` (which
    samples carry noise), ``init`` (victim weights), ``order`` (data order), ``augment`` (crop,
    flip and every defense's random draws)."""

    craft: int
    poison: int
    init: int
    order: int
    augment: int

    def generator(self, stream: str) -> torch.Generator:
        """A fresh CPU generator seeded for ``stream``."""
        return torch.Generator().manual_seed(getattr(self, stream))


def seed_global(seed: int) -> None:
    """Seed torch's global generator (every device's) with ``seed``, one of a cell's streams.

    Still needed because ``torch.nn`` modules draw their initial weights from it: a victim or
    source model is built by a plugin's ``build(num_classes, image_shape)``, which takes no
    generator, so its weights follow the global seed set just before (``init`` for the victim;
    ``craft``, or a seed drawn from it, for an attack's source model).  Library code that draws
    from it has the same need (kornia's augmentations, which ``ueraser`` seeds inside
    ``torch.random.fork_rng``).
    """
    torch.manual_seed(seed)


def seed_streams(seed: int) -> SeedStreams:
    """The five streams of ``seed`` (a non-negative int)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    values = [int(c.generate_state(1, np.uint64)[0]) >> 1 for c in children]  # 63 bits: fits torch's seed range
    return SeedStreams(*values)
