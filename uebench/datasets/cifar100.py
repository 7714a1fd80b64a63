"""CIFAR-100 (Krizhevsky 2009), read from the cache layout or downloaded through torchvision.

50,000 train / 10,000 test colour images, 32×32, 100 fine-label classes (500 / 100 per class);
the 20 coarse super-classes are not used.  Label ``k`` is the ``k``-th fine label name in the
archive's ``meta`` file, which is alphabetical (``apple`` … ``worm``) — the order torchvision's
``CIFAR100.classes`` reports and ``classes`` below spells out.

The seed paper: ε = 8/255 as on CIFAR-10, victims trained for 100 epochs, error-minimizing
noise crafted with M = 20 model steps between perturbation passes (10 on CIFAR-10 and SVHN);
Table 1, ResNet-18: clean 70.96 (Δs rows) / 70.50 (Δc rows), unlearnable 14.81 (Δs) / 3.95 (Δc).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from uebench.datasets.base import Dataset, write_splits
from uebench.hookspecs import hookimpl

# The fine label names in label order (alphabetical, as in the archive's ``meta`` file).
CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


class Cifar100(Dataset):
    """CIFAR-100: 50,000 train / 10,000 test colour images, 32×32, 100 classes."""

    name = "cifar100"
    classes = CLASSES
    image_shape = (3, 32, 32)

    def download(self, folder: Path) -> None:
        from torchvision.datasets import CIFAR100

        with tempfile.TemporaryDirectory() as tmp:
            train = CIFAR100(tmp, train=True, download=True)
            test = CIFAR100(tmp, train=False, download=True)
            for split in (train, test):
                got = tuple(split.classes)
                if got != self.classes:  # labels would be misnamed: refuse rather than cache them
                    diff = next((i for i, (a, b) in enumerate(zip(got, self.classes, strict=False)) if a != b),
                                min(len(got), len(self.classes)))
                    raise RuntimeError(
                        f"the downloaded CIFAR-100 names its classes differently from uebench's list "
                        f"({len(got)} classes; first difference at label {diff}: "
                        f"{got[diff] if diff < len(got) else '(none)'!r} "
                        f"vs {self.classes[diff] if diff < len(self.classes) else '(none)'!r})"
                    )
            write_splits(folder, train, test)


@hookimpl
def register_datasets(register):
    register(Cifar100)
