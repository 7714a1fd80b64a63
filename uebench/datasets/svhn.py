"""SVHN (Netzer et al. 2011), cropped digits, read from the cache layout or downloaded through torchvision.

73,257 train / 26,032 test colour images, 32×32, 10 classes (the digits 0–9; the 531,131
``extra`` images are not used).  torchvision reads the ``.mat`` files as N×C×H×W and already maps
the files' label 10 to digit 0, so label ``k`` is digit ``k``; the cache layout stores the images
N×H×W×C like every uebench dataset.  Digits are not mirror-symmetric, so the random horizontal
flip of standard augmentation is off (``hflip = False``).

The seed paper: ε = 8/255, victims trained for 30 epochs, error-minimizing noise crafted with
M = 10 model steps between perturbation passes; Table 1, ResNet-18: clean 96.02 (Δs rows) /
95.98 (Δc rows), unlearnable 8.22 (Δs) / 9.05 (Δc).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from uebench.datasets.base import Dataset, write_layout
from uebench.hookspecs import hookimpl


class Svhn(Dataset):
    """SVHN: 73,257 train / 26,032 test colour digit images, 32×32, 10 classes."""

    name = "svhn"
    classes = tuple(str(d) for d in range(10))
    image_shape = (3, 32, 32)
    hflip = False
    """No random horizontal flip in training: a mirrored digit is not that digit (2, 3, 5, 7 …)."""

    def download(self, folder: Path) -> None:
        from torchvision.datasets import SVHN

        with tempfile.TemporaryDirectory() as tmp:
            train = SVHN(tmp, split="train", download=True)
            test = SVHN(tmp, split="test", download=True)
            write_layout(folder, *_hwc(train), *_hwc(test))


def _hwc(split) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's SVHN split → (uint8 N×H×W×C images, int64 labels 0–9)."""
    x = np.asarray(split.data, dtype=np.uint8)
    if x.ndim != 4 or x.shape[1] != 3:
        raise RuntimeError(f"expected torchvision's SVHN images as N×3×H×W, got shape {x.shape}")
    y = np.asarray(split.labels, dtype=np.int64).reshape(-1)
    if len(y) != len(x) or not np.isin(y, np.arange(10)).all():
        found = f" in [{y.min()}, {y.max()}]" if len(y) else ""
        raise RuntimeError(f"expected {len(x)} SVHN labels in 0–9, got {len(y)}{found}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y


@hookimpl
def register_datasets(register):
    register(Svhn)
