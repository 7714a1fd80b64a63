"""The site's gallery: the committed pictures of every poison (``uebench leaderboard gallery``).

``leaderboards/gallery/<protocol>/<dataset>/`` holds small PNGs — the same ten training images
(one per class) clean, as released poisoned, and their δ amplified — and ``gallery.json``, which
names them and says, for an attack not pictured, why and which command would craft it.  The site
copies the PNGs as they are and shows one page per pictured attack; it never draws a picture of
its own.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from uebench.stats import slug

GALLERY_FILE = "gallery.json"


@dataclass(frozen=True)
class GalleryEntry:
    """One attack configuration's gallery: its pictures (paths under the site) or why there are none."""

    protocol: str
    dataset: str
    label: str
    entry: dict
    folder: str  # the PNGs' folder under the site: gallery/<protocol>/<dataset>/

    @property
    def board(self) -> str:
        """``cpu · cifar10``: the gallery index groups by it."""
        return f"{self.protocol} · {self.dataset}"

    @property
    def shown(self) -> bool:
        return self.entry.get("status") == "shown"

    @property
    def page(self) -> str | None:
        return f"gallery/{slug(f'{self.protocol}-{self.dataset}-{self.label}')}.html" if self.shown else None

    def images(self, kind: str) -> list[str]:
        """The ``clean``, ``poisoned`` or ``delta`` PNGs, as paths under the site root."""
        return [f"{self.folder}/{name}" for name in self.entry.get(kind) or []]

    @property
    def rows(self) -> list[dict]:
        """One row per shown training image: class, clean, poisoned, δ, PSNR."""
        classes, psnr = self.entry.get("classes") or [], self.entry.get("psnr") or []
        labels = self.entry.get("labels") or list(range(len(classes)))
        clean, poisoned, delta = self.images("clean"), self.images("poisoned"), self.images("delta")
        return [{"class": classes[labels[i]] if labels[i] < len(classes) else str(labels[i]),
                 "index": (self.entry.get("indices") or [None] * len(clean))[i],
                 "clean": clean[i], "poisoned": poisoned[i] if i < len(poisoned) else None,
                 "delta": delta[i] if i < len(delta) else None, "psnr": psnr[i] if i < len(psnr) else None,
                 "delta_max": (self.entry.get("delta_max") or [None] * len(clean))[i]}
                for i in range(len(clean))]


def read_galleries(folder: Path) -> list[GalleryEntry]:
    """Every entry of every ``<folder>/<protocol>/<dataset>/gallery.json``, in file order."""
    entries = []
    for found in sorted(Path(folder).glob(f"*/*/{GALLERY_FILE}")):
        protocol, dataset = found.parent.parent.name, found.parent.name
        data = json.loads(found.read_text())
        for label, entry in data.get("attacks", {}).items():
            entries.append(GalleryEntry(protocol, dataset, label, entry, f"gallery/{protocol}/{dataset}"))
    return entries


def links(entries: list[GalleryEntry]) -> dict[str, dict[str, dict[str, str]]]:
    """protocol → dataset → attack label → its gallery page (pictured attacks only): what a
    board's attack column links to."""
    out: dict = {}
    for e in entries:
        if e.page:
            out.setdefault(e.protocol, {}).setdefault(e.dataset, {})[e.label] = e.page
    return out


def copy_pictures(source: Path, out: Path, entries: list[GalleryEntry]) -> None:
    """Copy the PNGs the entries name from ``source`` (``leaderboards/gallery``) into the site;
    a PNG gallery.json names but the folder lacks is an error (the site would show a hole)."""
    missing = []
    for e in entries:
        for kind in ("clean", "poisoned", "delta"):
            for name in e.entry.get(kind) or []:
                src = Path(source) / e.protocol / e.dataset / name
                dst = Path(out) / e.folder / name
                if not src.is_file():
                    missing.append(str(src))
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    shutil.copyfile(src, dst)
    if missing:
        from uebench.site import SiteError

        raise SiteError(f"gallery.json names {len(missing)} picture(s) that are not there, e.g. {missing[0]}; "
                        "rerun `uebench leaderboard gallery`")
