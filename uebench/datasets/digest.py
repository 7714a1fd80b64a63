"""A dataset's content digest: which pixels a cell ran on, in its keys and rows.

Two copies of "cifar10" need not hold the same images: the CIFAR-10 in our shared data is
decoded from JPEG (about 5.7/255 per pixel from the originals), a torchvision download holds
the original pixels.  Both load as ``cifar10``; without the digest they would get the same cell
keys and share cached noise.  The digest is sha256 over the decoded arrays (train and test
images and labels, with dtype and shape), so it does not depend on how the files were
compressed, and is computed once per dataset folder: it is kept under the uebench cache
(``~/.cache/uebench/digests/``, never in the data folder, which may be read-only or shared)
with the size and modification time of every file it covers, and computed again when any of
them changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from uebench.atomic import atomic_write

DIGEST_CHARS = 16


def content_digest(*arrays) -> str:
    """sha256 (16 hex characters) over ``arrays`` in order, each with its dtype and shape."""
    h = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(np.asarray(array))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:DIGEST_CHARS]


def layout_files(folder: Path) -> list[Path]:
    return [Path(folder) / "test.npz", *sorted(Path(folder).glob("train-*.npz"))]


def file_stats(folder: Path) -> dict[str, list[int]]:
    """Name → [size, mtime in ns] of every file the digest covers."""
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in layout_files(folder)}


def record_path(folder: Path, cache_root: Path) -> Path:
    """Where the digest of ``folder`` is kept: named by a hash of its resolved path."""
    name = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return Path(cache_root) / "digests" / f"{name}.json"


def folder_digest(folder: Path, read: Callable[[Path], tuple], cache_root: Path) -> str:
    """The digest of the dataset in ``folder`` (``read(folder)`` → its arrays), from the kept
    record while every file is unchanged, else computed and kept (a cache that cannot be written
    only costs the computation next time)."""
    folder = Path(folder).resolve()
    stats, where = file_stats(folder), record_path(folder, cache_root)
    try:
        kept = json.loads(where.read_text())
        if kept.get("folder") == str(folder) and kept.get("files") == stats and isinstance(kept.get("digest"), str):
            return kept["digest"]
    except (OSError, ValueError, AttributeError):
        pass
    digest = content_digest(*read(folder))
    record = json.dumps({"folder": str(folder), "files": stats, "digest": digest}, indent=1)
    try:
        atomic_write(where, lambda tmp: Path(tmp).write_text(record))
    except OSError:
        pass
    return digest


def path_digest(path: Path) -> str:
    """sha256 (16 hex characters) of a file's bytes, or of a folder's files (relative names and
    bytes, in sorted order): what an attack that reads a file is keyed by, so a file overwritten
    in place is another cell, and the same bytes under another path are the same cell."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f is not path:
            h.update(f"{f.relative_to(path).as_posix()}\0".encode())
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:DIGEST_CHARS]
