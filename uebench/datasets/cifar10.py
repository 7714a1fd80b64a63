"""CIFAR-10 (Krizhevsky 2009), read from the cache layout or downloaded through torchvision."""

from __future__ import annotations

import tempfile
from pathlib import Path

from uebench.datasets.base import Dataset, write_splits
from uebench.hookspecs import hookimpl


class Cifar10(Dataset):
    """CIFAR-10: 50,000 train / 10,000 test colour images, 32×32, 10 classes."""

    name = "cifar10"
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    image_shape = (3, 32, 32)

    def download(self, folder: Path) -> None:
        from torchvision.datasets import CIFAR10

        with tempfile.TemporaryDirectory() as tmp:
            train = CIFAR10(tmp, train=True, download=True)
            test = CIFAR10(tmp, train=False, download=True)
            write_splits(folder, train, test)


@hookimpl
def register_datasets(register):
    register(Cifar10)
