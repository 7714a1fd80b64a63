"""Content-addressed noise cache: craft once, reuse in every cell with the same attack settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

from uebench.noise import Noise, NoiseFileError, load_noise, save_noise


def default_cache_dir() -> Path:
    if os.environ.get("UEBENCH_CACHE"):
        return Path(os.environ["UEBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "uebench" / "noise"


def noise_key(fields: dict) -> str:
    """A stable hash of everything that determines the noise (attack, resolved options, data, ...)."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class NoiseCache:
    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder else default_cache_dir()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def lock(self, key: str) -> FileLock:
        """Held while crafting, so two cells needing the same noise craft it once."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path(key)) + ".lock")

    def remove_orphans(self, key: str) -> None:
        """Delete temp files a writer of ``key`` left when it was killed mid-save.  Call with
        :meth:`lock` held: then no live writer of ``key`` exists."""
        for stale in self.folder.glob(f".{key}.pt.*.tmp"):
            stale.unlink(missing_ok=True)

    def get(self, key: str, shape: tuple[int, ...] | None = None,
            identity: dict | None = None) -> tuple[Noise | None, str | None]:
        """(noise, None) on a valid hit; (None, reason) on a miss or an invalid file (then removed).

        Valid: readable, finite, within its ε, written under this ``key``, with images of
        ``shape`` and, when given, the ``identity`` (attack, dataset, protocol version, ε, seed)
        it was crafted for."""
        path = self.path(key)
        if not path.exists():
            return None, "miss"
        try:
            noise = load_noise(path, expect={"key": key, **({"identity": identity} if identity is not None else {})})
            if shape is not None and tuple(noise.delta.shape[1:]) != tuple(shape[1:]):
                raise NoiseFileError(f"noise file {path}: image shape {tuple(noise.delta.shape[1:])} != {tuple(shape[1:])}")
        except NoiseFileError as exc:
            path.unlink(missing_ok=True)
            return None, str(exc)
        return noise, None

    def put(self, key: str, noise: Noise) -> Path:
        noise.meta["key"] = key
        save_noise(noise, self.path(key))
        return self.path(key)
