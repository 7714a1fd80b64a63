"""``uebench leaderboard site``: the committed results as a static website.

Researchers reach for RobustBench because its leaderboard is a page to sort, search and open,
with the published number beside the measured one.  This package writes that for uebench: plain
HTML files from jinja2 templates (``templates/``), one stylesheet and one small script
(``static/``, no framework, nothing fetched from the network), so the site opens from
``file://`` as well as from GitHub Pages.

Pages (paths relative to ``--out``):

- ``index.html`` — every board (protocol × dataset × victim), the protocols' descriptions.
- ``<board>.html`` — a board's attack × defense tables (mean ± sd, n; sort by any column,
  filter attacks and defenses by name, show the oracle, imperceptibility and published
  columns), its figures (``uebench.plots``) and its detection table.
- ``cells/<configuration>.html`` — one configuration: per-seed rows, accuracy per epoch,
  accuracy per class, options, keys, device, time and the ``uebench run`` command of each seed.
- ``gallery/index.html``, ``gallery/<protocol>-<dataset>-<attack>.html`` — clean | poisoned |
  δ of the same ten training images for every attack (``uebench leaderboard gallery``).
- ``reported.html`` — every published number of ``leaderboards/reported.toml`` beside what
  uebench measured at that scale, or "not measured at this scale yet".

The numbers come from ``uebench.site.model``, which reads them through the functions the
markdown board uses: the site and ``leaderboard build`` cannot disagree.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

MARKER = ".uebench-site"  # written into every site; a folder without it is never replaced


class SiteError(ValueError):
    """An ``--out`` that cannot take a site, or a root without results (exit code 2)."""


def build_site(root: Path, out: Path) -> list[Path]:
    """Write the site for every ``<root>/<protocol>/results.csv`` into ``out``; returns the
    pages written.  The site is built in a temporary folder beside ``out`` and moved into place
    only when complete, so a failed build leaves the previous site as it was."""
    root, out = Path(root), Path(out)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pages = _write(root, staging)
        (staging / MARKER).write_text("uebench leaderboard site; this folder is replaced by the next build\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / p.relative_to(staging) for p in pages]


def check_out(out: Path) -> None:
    """``out`` must be a new folder, an empty one or an earlier site (it holds :data:`MARKER`):
    the build replaces it whole, and must never delete a folder of someone's files."""
    if out.exists() and not out.is_dir():
        raise SiteError(f"--out {str(out)!r} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise SiteError(f"--out {str(out)!r} is a folder that holds other files and no earlier site "
                        f"(no {MARKER} in it); the build replaces its folder whole, so give a new or empty folder")


def _write(root: Path, out: Path) -> list[Path]:
    from uebench.site.pages import SiteWriter

    return SiteWriter(root, out).write_all()


def sitemap(out: Path) -> list[str]:
    """The HTML pages of a built site, relative to it (what the browser test walks)."""
    return sorted(str(p.relative_to(out)) for p in Path(out).rglob("*.html"))


__all__ = ["MARKER", "SiteError", "build_site", "check_out", "sitemap"]
