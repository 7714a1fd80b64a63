"""The seed paper's ImageNet subset: ImageNet-1k's first 100 classes, 20% of their training images.

What: the classes with indices 0–99 in ImageNet-1k's standard order, i.e. the first 100 WordNet
ids in sorted order (``n01440764`` tench … ``n01855672`` goose); label ``k`` is ``classes[k]``.
Training set: of each class's training images, the first 20% (rounded up) in ImageFolder's file
order (sorted path names) — deterministic without a seed, and the same files on every copy of
ImageNet; ≈26,000 images (up to 1,300 per class → 260).  Test set: all validation images of those
classes (50 each, 5,000).

Source: ImageNet's licence rules out an automatic download.  Point ``$UEBENCH_IMAGENET`` (or the
``root`` option) at a folder holding ``train/`` and ``val/``, each with one sub-folder per WordNet
id as torchvision's ``ImageFolder`` expects (the official validation archive is flat: sort it into
class folders first).  The first load decodes the selected images once with ``torchvision.io``,
resizes each (shorter side to 64, then the centred 64×64 crop, antialiased) and writes uebench's
cache layout to ``<data root>/imagenet-subset/``; later loads read that cache in seconds, and a
copy of that folder is all another machine needs.

Size: 64×64 (``image_shape``).  The paper trains at 224×224, but uebench's victims are CIFAR-style
networks and a dataset is kept whole on the compute device: 64×64 (the resolution of Downsampled
ImageNet and Tiny ImageNet) keeps 4× CIFAR's pixels at ≈320 MB of uint8 for the training set.
Size, class count and percentage are class constants because the cache folder is keyed by
``name``: another variant is a subclass with its own ``name`` (e.g. ``image_shape = (3, 32, 32)``).

The seed paper: ε = 16/255 (8/255 elsewhere), victims trained for 100 epochs, error-minimizing
noise crafted with M = 100 model steps between perturbation passes; Table 1, ResNet-18: clean
60.42 / unlearnable 12.20 in the Δs rows, 76.52 / 2.70 in the Δc rows.  The paper's footnote says
the 20% subset served as the whole training set "due to efficiency" for sample-wise noise; the
higher clean accuracy of its Δc rows suggests those used all training images of the 100 classes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uebench.datasets.base import Dataset, DataUnavailableError, write_layout
from uebench.hookspecs import hookimpl
from uebench.options import option

ENV_VAR = "UEBENCH_IMAGENET"

# ImageNet-1k's first 100 classes: WordNet ids in sorted order (= class indices 0–99).
WNIDS = (
    "n01440764", "n01443537", "n01484850", "n01491361", "n01494475",
    "n01496331", "n01498041", "n01514668", "n01514859", "n01518878",
    "n01530575", "n01531178", "n01532829", "n01534433", "n01537544",
    "n01558993", "n01560419", "n01580077", "n01582220", "n01592084",
    "n01601694", "n01608432", "n01614925", "n01616318", "n01622779",
    "n01629819", "n01630670", "n01631663", "n01632458", "n01632777",
    "n01641577", "n01644373", "n01644900", "n01664065", "n01665541",
    "n01667114", "n01667778", "n01669191", "n01675722", "n01677366",
    "n01682714", "n01685808", "n01687978", "n01688243", "n01689811",
    "n01692333", "n01693334", "n01694178", "n01695060", "n01697457",
    "n01698640", "n01704323", "n01728572", "n01728920", "n01729322",
    "n01729977", "n01734418", "n01735189", "n01737021", "n01739381",
    "n01740131", "n01742172", "n01744401", "n01748264", "n01749939",
    "n01751748", "n01753488", "n01755581", "n01756291", "n01768244",
    "n01770081", "n01770393", "n01773157", "n01773549", "n01773797",
    "n01774384", "n01774750", "n01775062", "n01776313", "n01784675",
    "n01795545", "n01796340", "n01797886", "n01798484", "n01806143",
    "n01806567", "n01807496", "n01817953", "n01818515", "n01819313",
    "n01820546", "n01824575", "n01828970", "n01829413", "n01833805",
    "n01843065", "n01843383", "n01847000", "n01855032", "n01855672",
)

# The files torchvision's ImageFolder counts as images (torchvision.datasets.folder.IMG_EXTENSIONS).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageNetSubset(Dataset):
    """ImageNet subset: first 100 ImageNet-1k classes, 20% of their train images, 64×64 (needs a local ImageNet)."""

    name = "imagenet-subset"
    classes = WNIDS
    image_shape = (3, 64, 64)
    train_percent = 20
    """Per class, the first ``ceil(n · train_percent / 100)`` training images in sorted file order."""

    @dataclass
    class Options:
        root: str | None = option(None, help=f"ImageNet folder holding train/ and val/ (ImageFolder layout); else ${ENV_VAR}")

    def __init__(self, options=None):
        super().__init__(options if options is not None else self.Options())

    def source_root(self) -> Path:
        """The ImageNet folder: the ``root`` option, else ``$UEBENCH_IMAGENET``; raise if neither names a folder."""
        given = getattr(self.options, "root", None)
        origin = "the root option"
        if not given:
            given, origin = os.environ.get(ENV_VAR), f"${ENV_VAR}"
        if not given:
            raise DataUnavailableError(
                f"dataset {self.name!r} is built from a local copy of ImageNet-1k (its licence rules out an automatic "
                f"download). Set {ENV_VAR}=/path/to/imagenet, a folder holding train/ and val/ with one sub-folder per "
                f"WordNet id (torchvision ImageFolder layout); the first load converts the subset into uebench's cache."
            )
        root = Path(given).expanduser()
        if not root.is_dir():
            raise DataUnavailableError(f"{origin} names {root}, which is not a folder (expected one holding train/ and val/)")
        return root

    def download(self, folder: Path) -> None:
        """Convert the subset of the local ImageNet (see :meth:`source_root`) into ``folder``."""
        train, val = select_subset(self.source_root(), self.classes, self.train_percent)
        folder.mkdir(parents=True, exist_ok=True)  # an unwritable data root fails now, not after decoding
        size = self.image_shape[1]
        x_train = read_images([p for p, _ in train], size)
        x_test = read_images([p for p, _ in val], size)
        y_train = np.array([k for _, k in train], dtype=np.int64)
        y_test = np.array([k for _, k in val], dtype=np.int64)
        write_layout(folder, x_train, y_train, x_test, y_test)


# --- choosing the files ---------------------------------------------------------------------


def class_folders(split_dir: Path) -> list[str]:
    """The class names ImageFolder finds: the sub-folders of ``split_dir``, sorted."""
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())


def image_files(class_dir: Path) -> list[Path]:
    """A class folder's images in ImageFolder's order: a sorted walk (sub-folders included), sorted names."""
    return [
        Path(dirpath) / fname
        for dirpath, _, fnames in sorted(os.walk(class_dir, followlinks=True))
        for fname in sorted(fnames)
        if fname.lower().endswith(IMG_EXTENSIONS)
    ]


def kept(n: int, percent: int) -> int:
    """How many of a class's ``n`` training images the subset keeps: ``ceil(n · percent / 100)``."""
    return -(-n * percent // 100)


def select_subset(root: Path, expected: tuple[str, ...] = WNIDS, percent: int = 20):
    """Validate ``root`` and pick the files: ([(train path, label)], [(val path, label)]).

    Classes are ``root/train``'s first ``len(expected)`` sub-folders in sorted order, which must be
    ``expected``; per class the first ``kept(n, percent)`` training images and every validation
    image.  Every problem raises :class:`DataUnavailableError` naming the path.
    """
    num_classes = len(expected)
    splits = {}
    for split in ("train", "val"):
        path = root / split
        if not path.is_dir():
            raise DataUnavailableError(
                f"no {split}/ folder in {root}: expected {path}/<WordNet id>/<images> (torchvision ImageFolder layout)"
            )
        splits[split] = (path, class_folders(path))
    (train_dir, train_classes), (val_dir, val_classes) = splits["train"], splits["val"]
    if len(train_classes) < num_classes:
        raise DataUnavailableError(
            f"{train_dir} has {len(train_classes)} class folders; the ImageNet subset takes the first {num_classes} "
            f"of ImageNet-1k's 1,000 (one folder per WordNet id)"
        )
    chosen = train_classes[:num_classes]
    if tuple(chosen) != tuple(expected):
        k = next(i for i, (a, b) in enumerate(zip(chosen, expected, strict=True)) if a != b)
        raise DataUnavailableError(
            f"the first {num_classes} class folders of {train_dir} (sorted) are not ImageNet-1k's first {num_classes} "
            f"WordNet ids: position {k} holds {chosen[k]!r} where ImageNet-1k has {expected[k]!r}. "
            f"Point {ENV_VAR} at an ImageNet-1k (ILSVRC2012) copy with all its class folders"
        )
    if val_classes != train_classes:
        missing = sorted(set(train_classes) - set(val_classes))
        extra = sorted(set(val_classes) - set(train_classes))
        flat = not val_classes and any(f.lower().endswith(IMG_EXTENSIONS) for f in os.listdir(val_dir))
        hint = (" It holds the images directly (the official flat validation layout): "
                "sort them into one folder per WordNet id first." if flat else "")
        raise DataUnavailableError(
            f"the class folders of {val_dir} differ from those of {train_dir}: "
            f"{len(missing)} missing in val{_few(missing)}, {len(extra)} only in val{_few(extra)}.{hint}"
        )
    train, val = [], []
    for label, wnid in enumerate(chosen):
        for split_dir, out, take_all in ((train_dir, train, False), (val_dir, val, True)):
            files = image_files(split_dir / wnid)
            if not files:
                raise DataUnavailableError(f"{split_dir / wnid} holds no images ({', '.join(IMG_EXTENSIONS)})")
            out.extend((p, label) for p in (files if take_all else files[: kept(len(files), percent)]))
    return train, val


def _few(names: list[str], n: int = 5) -> str:
    if not names:
        return ""
    return " (" + ", ".join(names[:n]) + (f", … {len(names) - n} more" if len(names) > n else "") + ")"


# --- reading the images ---------------------------------------------------------------------


def read_square(path: Path, size: int) -> np.ndarray:
    """One image file → uint8 size×size×3: RGB, shorter side resized to ``size`` (antialiased), centre crop."""
    from torchvision.io import ImageReadMode, decode_image, read_file
    from torchvision.transforms.v2 import functional as F

    try:
        img = decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        raise DataUnavailableError(f"cannot decode {path}: {exc}") from None
    img = F.center_crop(F.resize(img, [size], antialias=True), [size, size])
    return img.permute(1, 2, 0).numpy()


def read_images(paths: list[Path], size: int, batch: int = 512, workers: int | None = None) -> np.ndarray:
    """Decode and resize ``paths`` into one uint8 N×size×size×3 array, ``batch`` files at a time on a
    thread pool (decoding and resizing run in torch's C++ code, outside the GIL)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            for i, img in enumerate(pool.map(read_square, chunk, [size] * len(chunk))):
                out[start + i] = img
    return out


@hookimpl
def register_datasets(register):
    register(ImageNetSubset)
