"""Committed results → what the site's pages show: boards, their tables, one page per cell.

Every number here comes from ``uebench.stats`` through the same functions the markdown board
uses (``uebench.leaderboard.grid`` for the attack × defense tables, ``imperceptibility_rows``,
``uebench.detection_board.detection_rows``), so the site never shows a statistic the markdown
does not.  What this module adds is structure: which page holds which table, the link from a
table cell to its configuration's page, and a page's per-seed rows, curves and command.

A *board* is one protocol × dataset × victim (the issue's unit of a leaderboard page); its
*sections* are the markdown's groups within it (poison rate, poisoned classes, dropped).  A
*cell* is one configuration (``config_key``): the seeds a table cell averages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from uebench.cellkey import is_missing
from uebench.leaderboard import grid, imperceptibility_rows
from uebench.stats import GROUP, current_version, labelled, parse_options, slug, spread

# The columns of a section's table beyond the defenses, shown when the reader asks for them.
IMPERCEPTIBILITY_COLUMNS = (("psnr_mean", "PSNR (dB)"), ("ssim_mean", "SSIM"), ("linf", "L∞"), ("l2_mean", "L2"),
                            ("l0_mean", "L0"))


@dataclass(frozen=True)
class CellLink:
    """One table cell: its statistics, its page, and a published number where one matches."""

    defense: str
    mean: float
    sd: float
    n: int
    ci_low: float
    ci_high: float
    oracle_mean: float | None
    href: str
    reported: object | None = None  # a uebench.reported record

    @property
    def text(self) -> str:
        return f"{self.mean:.2f}{spread(self.sd)}"

    @property
    def interval(self) -> str:
        return "" if pd.isna(self.ci_low) else f"95% CI {self.ci_low:.1f}–{self.ci_high:.1f}"


@dataclass(frozen=True)
class TableRow:
    label: str
    cells: tuple[CellLink | None, ...]
    imperceptibility: dict[str, str]
    gallery_href: str | None = None


@dataclass(frozen=True)
class Section:
    title: str
    anchor: str
    defenses: tuple[str, ...]
    rows: tuple[TableRow, ...]


@dataclass(frozen=True)
class Board:
    """One protocol × dataset × victim page."""

    protocol: str
    dataset: str
    victim: str
    description: str
    version: int | str
    older_rows: int
    numerics: str
    sections: tuple[Section, ...]
    runs: int
    configurations: int

    @property
    def slug(self) -> str:
        return slug(f"{self.protocol}-{self.dataset}-{self.victim}")

    @property
    def title(self) -> str:
        return f"{self.protocol} · {self.dataset} · {self.victim}"

    @property
    def has_reported(self) -> bool:
        """Whether any cell has a published number beside it (else the board offers no toggle)."""
        return any(c is not None and c.reported is not None for s in self.sections for r in s.rows for c in r.cells)


@dataclass(frozen=True)
class Run:
    """One seed of a cell: its row and what the page shows of it."""

    row: dict
    command: str
    curve: pd.DataFrame | None


@dataclass(frozen=True)
class CellPage:
    """A configuration's page: every seed, their curves, the command that reruns each."""

    id: str
    board: Board
    section: Section
    label: str
    defense: str
    link: CellLink
    rows: tuple = ()  # the index labels of its rows in the protocol's frame
    runs: tuple[Run, ...] = ()
    classes: tuple[str, ...] = field(default=())

    @property
    def first(self) -> dict:
        return self.runs[0].row


def cell_id(configuration: str) -> str:
    """The page name of a configuration (``<config_key>-<norm>``: a board tells configurations
    apart by both, ``uebench.stats.with_config_keys``)."""
    return slug(configuration)


def load_rows(root: Path) -> dict[str, tuple[pd.DataFrame, int]]:
    """protocol → (its shown rows, labelled as the markdown labels them; how many older-version
    rows its CSV also holds)."""
    out = {}
    for csv in sorted(Path(root).glob("*/results.csv")):
        frame = pd.read_csv(csv)
        shown = current_version(frame)
        # the tables name a defense with its distinguishing options (``early-stop [clean_val=True]``);
        # a run's command needs the name the row holds
        out[csv.parent.name] = (labelled(shown.assign(defense_name=shown["defense"])), len(frame) - len(shown))
    return out


def boards_of(protocol: str, rows: pd.DataFrame, older: int, numerics: str, reported=None,
              gallery_links: dict | None = None) -> list[tuple[Board, list[CellPage]]]:
    """The boards of one protocol's rows and the cell pages each links to (``reported``: the
    published numbers, ``uebench.reported.Reported``; ``gallery_links``: dataset → attack label →
    its gallery page)."""
    from uebench.protocols import PROTOCOLS

    known = PROTOCOLS.get(protocol)
    description = known.description if known else ""
    version = known.version if known else (rows["protocol_version"].max() if len(rows) else "")
    out = []
    for (dataset, victim), board_rows in rows.groupby(["dataset", "victim"], sort=True):
        sections, pages = [], []
        board = Board(protocol, dataset, victim, description, version, older, numerics, (), len(board_rows),
                      board_rows["configuration"].nunique())
        for key, part in sorted(board_rows.groupby(GROUP, sort=True), key=lambda kv: _section_order(kv[0])):
            section, section_pages = _section(board, key, part, reported, (gallery_links or {}).get(dataset, {}))
            sections.append(section)
            pages += section_pages
        board = replace(board, sections=tuple(sections))
        pages = [replace(p, board=board) for p in pages]
        out.append((board, pages))
    return out


def _section_order(key) -> tuple:
    """The whole poisoned set first (the board's main table), then smaller poison rates, then
    one-class poisons, then the clean-remainder comparisons."""
    _, _, rate, classes, drop = key
    return (bool(drop), bool(classes), -float(rate), str(classes))


def _section(board: Board, key, part: pd.DataFrame, reported, gallery: dict) -> tuple[Section, list[CellPage]]:
    from uebench.stats import group_title

    title = group_title(key, quote="")
    title = title.split(" · ", 2)[2] if title.count(" · ") >= 2 else title  # the board names dataset and victim
    anchor = slug(title)
    defenses, grid_rows = grid(part)
    _, oracle_rows = grid(part, "oracle_best_test_acc") if part["oracle_best_test_acc"].notna().any() else ([], [])
    oracle = {(label, d): c for label, cells in oracle_rows for d, c in zip(defenses, cells, strict=False) if c is not None}
    imperceptibility = {r["label"]: r for r in imperceptibility_rows(part)}
    rows, pages = [], []
    section = Section(title, anchor, tuple(defenses), ())
    for label, cells in grid_rows:
        links = []
        for defense, cell in zip(defenses, cells, strict=True):
            if cell is None:
                links.append(None)
                continue
            runs = part[(part["attack_label"] == label) & (part["defense"] == defense)]
            configuration = runs["configuration"].iloc[0]
            record = reported.for_cell(board.protocol, board.dataset, board.victim, key, runs.iloc[0]) if reported else None
            o = oracle.get((label, defense))
            link = CellLink(defense, float(cell["mean"]), float(cell["sd"]), int(cell["n"]), float(cell["ci_low"]),
                            float(cell["ci_high"]), None if o is None else float(o["mean"]),
                            f"cells/{cell_id(configuration)}.html", record)
            links.append(link)
            pages.append(CellPage(cell_id(configuration), board, section, label, defense, link, tuple(runs.index)))
        found = imperceptibility.get(label, {})
        gallery_entry = gallery.get(label)
        rows.append(TableRow(label, tuple(links), {k: found.get(k, "") for k, _ in IMPERCEPTIBILITY_COLUMNS},
                             gallery_entry))
    section = Section(title, anchor, tuple(defenses), tuple(rows))
    pages = [replace(p, section=section) for p in pages]
    return section, pages


def with_runs(page: CellPage, rows: pd.DataFrame, curves: Path, classes: tuple[str, ...]) -> CellPage:
    """``page`` with its seeds' rows, curves and commands (read only for the pages written)."""
    from uebench.run_command import run_command

    mine = rows.loc[list(page.rows)].sort_values(["seed", "run_id"])
    runs = []
    for record in mine.to_dict("records"):
        record = {**record, "defense": record["defense_name"]}
        clean = {k: ("" if is_missing(v) else v) for k, v in record.items()}
        path = Path(curves) / f"{record['run_id']}.csv"
        runs.append(Run(clean, run_command(record), pd.read_csv(path) if path.is_file() else None))
    return replace(page, runs=tuple(runs), classes=classes)


def options_text(text) -> str:
    """A row's options JSON as ``key = value`` lines (``(defaults)`` when it holds none)."""
    parsed = parse_options(text)
    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in sorted(parsed.items())) or "(defaults)"


__all__ = ["Board", "CellLink", "CellPage", "Run", "Section", "TableRow", "boards_of", "load_rows", "options_text", "with_runs"]
