"""An attack's options as its keys and its row hold them.

An option naming a file the attack reads (``Attack.input_files``) is keyed by the file's
content, ``sha256:<digest>``, not by its path: a file overwritten in place is another cell, the
same bytes under another name the same.  The path itself goes to the row's ``inputs`` column.
"""

from __future__ import annotations

import functools
from pathlib import Path

from uebench.options import applied_options, canonical_json


def identity_options(attack, resolved) -> dict:
    """The attack's applied options, each file option replaced by ``sha256:<digest of the content>``."""
    options = applied_options(resolved)
    for name, path in attack.input_files(resolved).items():
        options[name] = f"sha256:{content_digest(str(path))}"
    return options


def input_locations(attack, resolved) -> str:
    """The row's ``inputs`` column: where those files were (information, not identity)."""
    files = attack.input_files(resolved)
    return canonical_json({name: str(Path(path).resolve()) for name, path in files.items()}) if files else ""


def content_digest(path: str) -> str:
    """The file's (or folder's) content digest, computed once per size and modification time."""
    stat = Path(path).stat()
    return _content_digest_memo(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _content_digest_memo(path: str, mtime_ns: int, size: int) -> str:
    from uebench.datasets.digest import path_digest

    return path_digest(Path(path))
