"""Writing the site: the model's boards and cells through the templates into files.

``SiteWriter`` owns the output folder's layout (which page lives where, the relative prefix
each page needs to reach the stylesheet) and nothing else: the numbers come from
``uebench.site.model``, the figures from ``uebench.plots``, the pictures from the committed
gallery and the published numbers from ``uebench.reported``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from uebench import __version__
from uebench.leaderboard import numerics_line
from uebench.site import charts
from uebench.site.model import (
    IMPERCEPTIBILITY_COLUMNS,
    Board,
    CellPage,
    boards_of,
    load_rows,
    options_text,
    with_runs,
)
from uebench.stats import slug

STATIC = Path(__file__).parent / "static"
CHANCE = {"cifar10": 10.0, "svhn": 10.0, "cifar100": 1.0}


class SiteWriter:
    """Writes every page of one site into ``out`` (a fresh folder)."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out = Path(root), Path(out)
        self.env = Environment(loader=PackageLoader("uebench.site", "templates"), autoescape=select_autoescape(),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        self.env.globals.update(version=__version__, imperceptibility_columns=IMPERCEPTIBILITY_COLUMNS)
        self.env.filters["pct"] = lambda v: "" if v is None or pd.isna(v) else f"{100 * float(v):.2f}"
        self.env.filters["options"] = options_text
        self.env.filters["slug"] = slug
        self.env.filters["whole"] = lambda v: "" if v == "" or v is None or pd.isna(v) else int(float(v))
        self.written: list[Path] = []

    def page(self, name: str, template: str, **context) -> None:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        base = "../" * name.count("/")
        path.write_text(self.env.get_template(template).render(base=base, **context))
        self.written.append(path)

    def write_all(self) -> list[Path]:
        shutil.copytree(STATIC, self.out / "static")
        protocols = load_rows(self.root)
        if not protocols:
            from uebench.site import SiteError

            raise SiteError(f"{str(self.root)!r} holds no <protocol>/results.csv: nothing to build a site from")
        from uebench.site.gallery_pages import links

        reported = self.reported()
        galleries = self.galleries()
        gallery_links = links(galleries)
        boards: list[Board] = []
        figures: dict[str, list] = {}
        detections: dict[str, tuple] = {}
        for protocol, (rows, older) in protocols.items():
            figures[protocol] = self.figures(protocol, rows)
            detections[protocol] = self.detections(protocol)
            for board, pages in boards_of(protocol, rows, older, numerics_line(rows), reported,
                                          gallery_links.get(protocol, {})):
                boards.append(board)
                self.page(f"{board.slug}.html", "board.html", board=board, figures=figures[protocol],
                          detection=detections[protocol], boards=boards)
                classes = self.classes(board.dataset)
                for cell in pages:
                    cell = with_runs(cell, rows, self.root / protocol / "curves", classes)
                    self.page(f"cells/{cell.id}.html", "cell.html", cell=cell, **self.cell_charts(cell))
        self.page("index.html", "index.html", boards=boards)
        self.write_gallery(galleries)
        self.page("reported.html", "reported.html", comparison=self.comparison(reported, protocols))
        return self.written

    # --- the parts other modules provide -------------------------------------------------------

    def figures(self, protocol: str, rows: pd.DataFrame) -> list[dict]:
        """The protocol's figures (``uebench.plots.figures``), written under ``figures/``."""
        from uebench import plots

        out = []
        for figure in plots.figures(rows, self.root / protocol / "curves"):
            path = self.out / "figures" / protocol / figure.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(figure.svg)
            out.append({"src": f"figures/{protocol}/{figure.name}", "alt": figure.alt, "caption": figure.caption})
        return out

    def detections(self, protocol: str) -> tuple:
        from uebench.detection_board import detection_rows

        found = self.root / protocol / "detections.csv"
        frame = pd.read_csv(found, dtype=str, keep_default_na=False) if found.exists() else None
        return detection_rows(frame)

    def reported(self):
        from uebench import reported

        path = self.root / "reported.toml"
        return reported.Reported.load(path) if path.is_file() else None

    def comparison(self, reported, protocols) -> list:
        if reported is None:
            return []
        frames = [rows for rows, _ in protocols.values()]
        return reported.comparison(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())

    def galleries(self) -> list:
        from uebench.site.gallery_pages import read_galleries

        return read_galleries(self.root / "gallery")

    def write_gallery(self, entries: list) -> None:
        """The pictures (copied as committed), an index of every attack, a page per pictured one."""
        from uebench.site.gallery_pages import copy_pictures

        copy_pictures(self.root / "gallery", self.out, entries)
        self.page("gallery/index.html", "gallery_index.html", entries=entries)
        for entry in entries:
            if entry.page:
                self.page(entry.page, "gallery.html", entry=entry)

    @staticmethod
    def classes(dataset: str) -> tuple[str, ...]:
        from uebench.plugins import get_host

        try:
            return tuple(get_host().datasets.get(dataset).cls.classes)
        except Exception:  # noqa: BLE001 - a dataset of a plugin not installed here: classes by index
            return ()

    # --- a cell page's charts --------------------------------------------------------------------

    @staticmethod
    def cell_charts(cell: CellPage) -> dict:
        """Accuracy per epoch (one line per seed) and per class (the mean over seeds, at the epoch
        whose weights each run ended with)."""
        series, per_class = [], {}
        for run in cell.runs:
            curve = run.curve
            if curve is None or curve.empty:
                continue
            series.append(charts.Series(f"seed {run.row['seed']}", tuple(zip(curve["epoch"].astype(float),
                                                                              100 * curve["test_acc"].astype(float),
                                                                              strict=True))))
            epoch = run.row.get("selected_epoch") or curve["epoch"].max()
            final = curve[curve["epoch"] == int(float(epoch))]
            final = final if len(final) else curve.tail(1)
            for column in (c for c in curve.columns if c.startswith("test_acc_c")):
                per_class.setdefault(int(column[len("test_acc_c"):]), []).append(100 * float(final[column].iloc[0]))
        chance = CHANCE.get(cell.board.dataset)
        curves = charts.line_chart(series, "epoch", "clean test accuracy (%)",
                                   (chance, f"chance {chance:g}%") if chance else None,
                                   title=f"{cell.label} × {cell.defense}: clean test accuracy per epoch") if series else None
        poisoned = {c.strip() for c in str(cell.first.get("poison_classes") or "").split(",") if c.strip()}
        names = [cell.classes[k] if k < len(cell.classes) else str(k) for k in sorted(per_class)]
        bars = charts.bar_chart([(name, sum(v) / len(v)) for name, v in zip(names, (per_class[k] for k in sorted(per_class)),
                                                                              strict=True)],
                                "clean test accuracy (%)", frozenset(poisoned),
                                title=f"{cell.label} × {cell.defense}: accuracy per class") if per_class else None
        return {"curves": curves, "per_class": bars, "poisoned_classes": sorted(poisoned),
                "per_class_values": [(n, per_class[k]) for n, k in zip(names, sorted(per_class), strict=True)]}


__all__ = ["SiteWriter"]
