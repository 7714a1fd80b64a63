"""Datasets: where they live on disk (uebench's dataset-cache layout) and the tensors they yield.

Layout of one dataset ``<root>/<name>/``: ``train-*.npz`` and ``test.npz``, each with ``x``
(uint8, N×H×W×C) and ``y`` (int64).  Roots are searched in order: ``--data-dir``, then
``$UEBENCH_DATA``, then the user cache (``$XDG_CACHE_HOME/uebench`` or ``~/.cache/uebench``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uebench.atomic import atomic_write


class DataUnavailableError(RuntimeError):
    """The dataset is in none of the places looked at and could not be downloaded."""


class DataCorruptError(DataUnavailableError):
    """A file of the dataset cache is unreadable or holds what no dataset file may (wrong dtype,
    labels out of range, x and y of different lengths)."""


@dataclass
class ImageData:
    """A whole dataset as uint8 NCHW tensors (kept whole on the compute device during training)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device) -> ImageData:
        return ImageData(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)), self.classes)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "uebench"


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The data roots in the order they are searched."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("UEBENCH_DATA"):
        roots.append(Path(os.environ["UEBENCH_DATA"]))
    roots.append(default_cache_dir())
    return roots


def has_layout(folder: Path) -> bool:
    return (folder / "test.npz").is_file() and any(folder.glob("train-*.npz"))


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One file of the layout → (x, y), or :class:`DataCorruptError` naming the file and the fault.
    No pickles: ``allow_pickle=False``."""
    def damaged(why: str) -> DataCorruptError:
        return DataCorruptError(f"dataset file {str(path)!r} is damaged: {why}. Delete it (uebench then downloads the "
                                f"dataset again) or restore it from the original")

    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["x"], archive["y"]
    except KeyError as exc:
        raise damaged(f"it lacks the array {exc}") from None
    except Exception as exc:  # truncated zip, bad CRC, an object array, not an npz at all
        raise damaged(f"{type(exc).__name__}: {exc}") from None
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise damaged(f"images x must be uint8 N×H×W(×C), got {x.dtype} of shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise damaged(f"labels y must be {len(x)} integers (one per image), got {y.dtype} of shape {y.shape}")
    return x, y.astype(np.int64)


def read_layout(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``train-*.npz`` (in name order) and ``test.npz`` → (x_train, y_train, x_test, y_test) HWC."""
    parts = [read_npz(f) for f in sorted(folder.glob("train-*.npz"))]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = read_npz(folder / "test.npz")
    return x_train, y_train, x_test, y_test


def _mtime(folder: Path) -> float:
    return max(f.stat().st_mtime for f in [folder / "test.npz", *folder.glob("train-*.npz")])


@functools.lru_cache(maxsize=2)
def _read_layout_memo(folder: Path, mtime: float):
    """Decompressing CIFAR-10 takes seconds; cells run in one process (tests, sweeps) share it."""
    return read_layout(folder)


def write_layout(folder: Path, x_train, y_train, x_test, y_test, shard: int = 10_000) -> None:
    """Write the cache layout atomically per file (temp name, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)

    def put(name, **arrays):
        atomic_write(folder / name, lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".tmp.npz")

    for k, start in enumerate(range(0, len(x_train), shard)):
        sl = slice(start, start + shard)
        put(f"train-{k:02d}.npz", x=x_train[sl], y=y_train[sl], index=np.arange(len(x_train))[sl])
    put("test.npz", x=x_test, y=y_test)


def write_splits(folder: Path, train, test) -> None:
    """Write torchvision's CIFAR-style datasets (``.data`` uint8 N×H×W×C, ``.targets``) in the layout."""
    write_layout(
        folder,
        np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets, dtype=np.int64),
    )


def hwc_to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 N×H×W×C (or N×H×W) → uint8 N×C×H×W tensor."""
    if x.ndim == 3:
        x = x[..., None]
    if x.dtype != np.uint8:
        raise ValueError(f"dataset images must be uint8, got {x.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class Dataset:
    """Base class of dataset plugins.  Subclasses set ``name``, ``classes`` and ``image_shape``."""

    name: str = ""
    classes: tuple[str, ...] = ()
    image_shape: tuple[int, int, int] = (3, 32, 32)
    hflip: bool = True
    """Whether standard augmentation may flip training images horizontally (False for digits, text)."""

    def __init__(self, options=None):
        self.options = options

    Options = None

    def _check_contents(self, folder: Path, x_train, y_train, x_test, y_test) -> None:
        """The layout's arrays fit this dataset: its image shape, labels in [0, classes)."""
        c, h, w = self.image_shape
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            chw = (x.shape[3] if x.ndim == 4 else 1, *x.shape[1:3])
            if chw != (c, h, w) or not len(x):
                raise DataCorruptError(
                    f"dataset {self.name!r} in {str(folder)!r}: {len(x)} {split} images of shape {tuple(x.shape[1:])} (H×W×C); "
                    f"expected one or more images of {(h, w, c)}. Delete the folder to download it again"
                )
            if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
                raise DataCorruptError(
                    f"dataset {self.name!r} in {str(folder)!r}: {split} labels span [{y.min()}, {y.max()}], outside "
                    f"[0, {len(self.classes) - 1}] for its {len(self.classes)} classes. Delete the folder to download it again"
                )

    def download(self, folder: Path) -> None:
        """Fetch the data into ``folder`` in the cache layout; raise on failure (e.g. offline)."""
        raise NotImplementedError(f"dataset {self.name!r} cannot be downloaded automatically")

    def locate(self, data_dir: str | os.PathLike | None = None) -> Path | None:
        """The first data root's folder holding this dataset in the cache layout, or None."""
        for root in candidate_roots(data_dir):
            if has_layout(root / self.name):
                return root / self.name
        return None

    def digest(self, data_dir: str | os.PathLike | None = None) -> str:
        """The content digest of the data :meth:`load` returns (``uebench.datasets.digest``):
        part of every cell key, so another copy of the dataset is another cell.  Downloads the
        dataset first where it is not there yet (as :meth:`load` would)."""
        from uebench.datasets.digest import content_digest, folder_digest

        folder = self.locate(data_dir)
        if folder is None:
            self.load(data_dir)  # downloads it, or says where it looked
            folder = self.locate(data_dir)
        if folder is None:  # a plugin dataset that loads without the layout: digest the tensors
            data = self.load(data_dir)
            return content_digest(*(t.numpy() for t in (data.x_train, data.y_train, data.x_test, data.y_test)))
        return folder_digest(folder, lambda f: _read_layout_memo(f, _mtime(f)), default_cache_dir())

    def train_count(self, data_dir: str | os.PathLike | None = None) -> int:
        """How many training images :meth:`load` returns, without loading them: the labels of the
        layout's ``train-*.npz`` counted (no image is decompressed), so a cell's noise request is
        complete before any data is loaded (``Cell.noise``).  A dataset without the layout on disk
        is loaded to count it."""
        folder = self.locate(data_dir)
        if folder is None:
            return len(self.load(data_dir).y_train)
        count = 0
        for part in sorted(folder.glob("train-*.npz")):
            with np.load(part, allow_pickle=False) as archive:
                count += len(archive["y"])
        return count

    def load(self, data_dir: str | os.PathLike | None = None, download: bool = True) -> ImageData:
        roots = candidate_roots(data_dir)
        looked = []
        for root in roots:
            folder = root / self.name
            looked.append(folder)
            if has_layout(folder):
                return self._from_folder(folder)
        errors = []
        if download:
            for root in roots:  # first writable root wins
                folder = root / self.name
                try:
                    self.download(folder)
                    return self._from_folder(folder)
                except Exception as exc:  # offline, read-only, not supported ...
                    errors.append(f"{folder}: {type(exc).__name__}: {exc}")
        where = "\n".join(f"  - {p}" for p in looked)
        tried = ("\nDownload attempts failed:\n" + "\n".join(f"  - {e}" for e in errors)) if errors else ""
        raise DataUnavailableError(
            f"dataset {self.name!r} was not found. Looked for train-*.npz and test.npz in:\n{where}{tried}\n"
            f"Provide it with --data-dir DIR or UEBENCH_DATA=DIR, where DIR/{self.name}/ holds the "
            f"cache layout (see README), or run once with internet access to download it."
        )

    def _from_folder(self, folder: Path) -> ImageData:
        x_train, y_train, x_test, y_test = _read_layout_memo(folder.resolve(), _mtime(folder))
        self._check_contents(folder, x_train, y_train, x_test, y_test)
        return ImageData(
            hwc_to_tensor(x_train),
            torch.from_numpy(y_train),
            hwc_to_tensor(x_test),
            torch.from_numpy(y_test),
            list(self.classes),
        )
