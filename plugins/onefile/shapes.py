"""A one-off dataset plugin file: ``uebench --plugins-dir plugins/onefile run --dataset shapes ...``.

``shapes`` is a synthetic dataset, generated rather than downloaded: 32×32 colour images of one
bright shape (square, disk, cross or ring, at a random place, size and colour) on a dark noisy
background, 100 training and 25 test images per class, the same bytes on every machine (fixed
seeds).  It is small enough for the ``smoke`` protocol and needs no internet.  It is here to show
a third-party dataset: ``download`` writes uebench's cache layout with ``write_layout`` (the
arrays) from ``uebench.api`` (``write_splits`` does the same for torchvision-style splits), and
the base class finds, checks and loads it from then on.  The built-in datasets are in
``uebench/datasets/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uebench.api import Dataset, hookimpl, write_layout

SIZE = 32
TRAIN_PER_CLASS, TEST_PER_CLASS = 100, 25


class Shapes(Dataset):
    """Synthetic shapes: 400 train / 100 test colour images, 32×32, 4 classes (generated, no download)."""

    name = "shapes"
    classes = ("square", "disk", "cross", "ring")
    image_shape = (3, SIZE, SIZE)
    hflip = True  # every shape is mirror-symmetric

    def download(self, folder: Path) -> None:
        write_layout(folder, *draw(TRAIN_PER_CLASS, seed=0), *draw(TEST_PER_CLASS, seed=1))


def draw(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class, classes interleaved: (uint8 N×H×W×C, int64 N)."""
    rng = np.random.default_rng(seed)
    n = per_class * len(Shapes.classes)
    y = np.arange(n, dtype=np.int64) % len(Shapes.classes)
    cy, cx = rng.integers(10, SIZE - 10, (2, n, 1, 1))
    r = rng.uniform(5, 9, (n, 1, 1))
    grid = np.arange(SIZE).reshape(1, SIZE, 1), np.arange(SIZE).reshape(1, 1, SIZE)
    dy, dx = np.abs(grid[0] - cy), np.abs(grid[1] - cx)
    d2 = dy**2 + dx**2
    masks = np.stack([
        np.maximum(dy, dx) <= r,  # square
        d2 <= r**2,  # disk
        ((dy <= r / 3) & (dx <= r)) | ((dx <= r / 3) & (dy <= r)),  # cross
        (d2 <= r**2) & (d2 >= (0.6 * r) ** 2),  # ring
    ])[y, np.arange(n)]  # N×H×W: each image's own class's shape
    background = rng.integers(0, 80, (n, SIZE, SIZE, 3))
    colour = rng.integers(140, 256, (n, 1, 1, 3))
    x = np.where(masks[..., None], colour, background).astype(np.uint8)
    return x, y


@hookimpl
def register_datasets(register):
    register(Shapes)
