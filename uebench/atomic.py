"""Write-then-rename, so a crash or a kill never leaves a half-written file where a reader looks."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it over ``path``.

    ``suffix`` lets writers that insist on an extension (``np.savez`` wants ``.npz``) keep it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file owner-only (0600); give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable_folder(folder: Path, what: str) -> None:
    """Raise ``OSError`` naming ``what`` unless ``folder`` exists as a writable folder or could be
    created: the nearest existing ancestor must be a folder we may write in.  Leaves nothing
    behind, so a run refused for another reason leaves no trace.

    ``os.access`` alone is not enough: root passes it everywhere, and a pseudo or read-only file
    system (``/proc``, a read-only mount) says yes and then refuses the write.  So a folder and a
    file are really made in that ancestor, and removed at once."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"{what} {str(folder)!r} cannot be a folder: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {str(folder)!r} is not writable: no write permission on {str(probe)!r}")
    _try_writing_in(probe, folder, what)


def _try_writing_in(probe: Path, folder: Path, what: str) -> None:
    """Make a hidden folder in ``probe`` and write a byte into a file inside it, then remove both;
    an ``OSError`` names ``what``, ``folder`` and the reason."""
    made = None
    try:
        made = tempfile.mkdtemp(dir=probe, prefix=".uebench-write-check-")
        with open(os.path.join(made, "probe"), "wb") as f:
            f.write(b"0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(f"{what} {str(folder)!r} cannot be created or written: making a folder and a file in "
                      f"{str(probe)!r} failed ({reason}); choose a folder on a writable disk") from None
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _umask() -> int:
    """The process umask (reading it means setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
