"""Reading a dataset a user brings to ``uebench detect PATH``: "I downloaded this; is it poisoned?"

Three shapes of dataset are read, none of them by unpickling:

- a folder of class folders (``PATH/<class>/<image>.png``, torchvision's ``ImageFolder``
  layout): the labels are the sorted folder names;
- uebench's dataset-cache layout (``PATH/train-00.npz`` …, what ``write_layout`` writes): its
  training split;
- an ``.npz`` file holding an image array (``x``, ``images``, ``data`` or ``x_train``: uint8
  N×H×W×C / N×C×H×W, or float in [0, 1]) and a label array (``y``, ``labels``, ``targets`` or
  ``y_train``), read with ``allow_pickle=False``.

Anything else is refused with a message naming the path and what is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uebench.detectors.base import SuspectSet
from uebench.options import OptionError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_KEYS = ("x", "images", "data", "x_train")
LABEL_KEYS = ("y", "labels", "targets", "y_train")
FORMATS = ("a folder of class folders (PATH/<class>/<image>.png)", "uebench's dataset-cache layout (PATH/train-00.npz …)",
           "an .npz with an image array (x, images, data or x_train) and a label array (y, labels, targets or y_train)")


def read_suspect(path: Path, description: str | None = None) -> tuple[SuspectSet, list[str]]:
    """The images and labels at ``path`` as a :class:`SuspectSet`, and the class names."""
    path = Path(path).expanduser()
    if not path.exists():
        raise OptionError(f"{path}: no such file or folder")
    if path.is_dir():
        if sorted(path.glob("train-*.npz")):
            x, y = _read_layout(path)
            names = [str(k) for k in range(int(y.max()) + 1)]
        else:
            x, y, names = _read_class_folders(path)
    elif path.suffix.lower() == ".npz":
        x, y = _read_npz(path)
        names = [str(k) for k in range(int(y.max()) + 1)]
    else:
        raise OptionError(f"{path}: cannot read a {path.suffix or 'suffix-less'} file as a dataset; detect reads "
                          + "; ".join(FORMATS))
    if len(torch.unique(y)) < 2:
        raise OptionError(f"{path}: every image has the same label ({int(y[0])}); a detector needs at least two classes")
    return SuspectSet(x, y, len(names), description=description or str(path)), names


def _read_class_folders(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision.io import ImageReadMode, decode_image, read_file

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = f" (it holds images such as {', '.join(loose)} but no class folders: the labels are missing)" if loose else ""
        raise OptionError(f"{folder}: no class folders{hint}; detect reads " + "; ".join(FORMATS))
    images, labels, shape = [], [], None
    for k, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for p in files:
            try:
                img = decode_image(read_file(str(p)), mode=ImageReadMode.RGB)
            except Exception as exc:
                raise OptionError(f"{p}: cannot be decoded as an image ({type(exc).__name__}: {exc})") from None
            if shape is None:
                shape = tuple(img.shape)
            elif tuple(img.shape) != shape:
                raise OptionError(f"{p}: a {'×'.join(map(str, img.shape))} image where the first was "
                                  f"{'×'.join(map(str, shape))}; a detector needs images of one size")
            images.append(img)
            labels.append(k)
    empty = [name for k, name in enumerate(classes) if k not in set(labels)]
    if not images:
        raise OptionError(f"{folder}: the class folders {', '.join(classes[:5])} hold no images ({', '.join(IMAGE_SUFFIXES)})")
    if empty:
        raise OptionError(f"{folder}: class folder(s) {', '.join(empty)} hold no images ({', '.join(IMAGE_SUFFIXES)})")
    return torch.stack(images), torch.tensor(labels, dtype=torch.long), classes


def _read_layout(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for shard in sorted(folder.glob("train-*.npz")):
        x, y = _read_npz(shard)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def _pick(files: list[str], keys: tuple[str, ...], path: Path, what: str) -> str:
    found = [k for k in keys if k in files]
    if not found:
        raise OptionError(f"{path}: no {what} array (looked for {', '.join(keys)}; it holds {', '.join(files) or 'nothing'})")
    return found[0]


def _read_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = list(archive.files)
            x = archive[_pick(files, IMAGE_KEYS, path, "image")]
            y = archive[_pick(files, LABEL_KEYS, path, "label")]
    except OptionError:
        raise
    except ValueError as exc:
        raise OptionError(f"{path}: not a readable .npz of plain arrays ({exc}); detect never unpickles") from None
    except Exception as exc:
        raise OptionError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise OptionError(f"{path}: images of shape {x.shape}; expected N×H×W×C or N×C×H×W")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise OptionError(f"{path}: images of dtype {x.dtype}; expected uint8 or float in [0, 1]")
    if x.dtype.kind == "f" and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
        raise OptionError(f"{path}: float images outside [0, 1] (min {np.nanmin(x):.3g}, max {np.nanmax(x):.3g}) or NaN")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise OptionError(f"{path}: labels of shape {y.shape}, dtype {y.dtype}; expected {len(x)} integer labels")
    if y.min() < 0:
        raise OptionError(f"{path}: negative label {int(y.min())}; labels are class indices 0..K-1")
    xt = torch.from_numpy(np.ascontiguousarray(x))
    return (xt if xt.dtype == torch.uint8 else xt.float()), torch.from_numpy(y.astype(np.int64))
