"""Leaderboard figures: one figure per question, where a picture says more than a table.

``figures(rows, curves_dir)`` draws them; ``uebench leaderboard build`` writes each into
``<protocol>/`` and the markdown embeds them, and the site (``uebench.site``) publishes the same
list.  A figure whose question the rows cannot answer yet is left out of the list (never written
as an empty image, never linked).  In order:

* ``accuracy.svg`` — *how does each attack fare under each defense?*  A heatmap per table
  (dataset × victim × poison scope, the markdown's sections in its order) that holds more than
  one cell: attacks as rows, defenses as columns, each cell the table's mean clean test accuracy
  (%) over seeds written in it, empty cells blank, one shared colour bar (0–100%, chance dashed);
  the title names the clean (no attack, no defense) accuracy and chance.  A table of one cell
  gets no panel: the figures below answer its question.  24 attacks × 13 defenses read at a
  glance here, where one bar per cell took a 5,000-pixel column.
* ``curves.svg`` — *does the victim learn the clean task at all while training on the poison?*
  (the seed paper's Figure 1): clean test accuracy per epoch for every attack without a defense,
  at 100% poison, one line per attack (the mean over seeds, a min–max band when n > 1), the clean
  baseline in black and chance dashed in every panel; n counts the runs that have a curve file.
  Small multiples so that no panel holds more lines than its palette has distinct colours
  (``CURVE_PANELS``, ``MAX_LINES``): the seed paper's error-minimizing noise by PGD and by Adam,
  its baselines (random, error-maximizing, mixtures), and the field's attacks since 2021.
* ``poison-rate.svg`` — *how much of the training set must be poisoned?* (the seed paper's
  Table 2): accuracy without a defense against the poison rate, one line per attack
  configuration measured at two or more rates; where the poisoned part was dropped instead
  (training on the clean remainder only) a hollow marker on a dashed line of the same colour;
  the clean baseline and chance as horizontal lines.
* ``per-class.svg`` — *does a one-class poison hurt only its class?* (the seed paper's
  Figure 2): test accuracy per class at the epoch each run ended with, for every cell that
  poisons some classes only, beside the clean baseline's per-class accuracy; the poisoned
  classes are marked.  Read from the runs' ``curves/<run_id>.csv`` (``test_acc_c<k>``).

Every final accuracy here (a heatmap cell, a poison-rate point, a legend's "overall") is read
through ``uebench.stats.cell_stats``, as the tables are, so a figure never shows a number the
markdown does not; per-epoch and per-class accuracies come from the runs' curve files, which the
site's cell pages read too.

Why a module of its own: matplotlib takes longer to import than the rest of uebench's CLI
start-up and only the builders need it, so it is imported inside the functions here, never at
``import uebench`` time. Why these settings: the files are committed and a test rebuilds them,
so they must be byte-identical from one build to the next (a fixed ``svg.hashsalt`` for the
element ids, no date in the metadata), and text is kept as SVG text rather than glyph outlines
(``svg.fonttype = "none"``) so a diff or a grep of the committed file shows the labels.  Every
figure is laid out by ``layout="constrained"``, so titles, tick labels and legends (outside the
axes) are never clipped, and sized from what it holds.
"""

from __future__ import annotations

import io
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from uebench.stats import GROUP, cell_stats, group_title, none_first

# Accuracy (%) of guessing, per dataset. Results rows carry no class count, so it lives here; a
# dataset not listed gets no chance line rather than a wrong one.
CHANCE = {"cifar10": 10.0, "svhn": 10.0, "cifar100": 1.0}

RC = {
    "svg.hashsalt": "uebench",  # element ids are hashes salted with this (random by default)
    "svg.fonttype": "none",  # text as <text>, not glyph paths
    "font.size": 9,
}

# curves.svg's panels: (title, attack names); an attack no panel names goes to the last one.
CURVE_PANELS = (
    ("the seed paper's error-minimizing noise, by PGD (Algorithm 1)", ("errmin-pgd",)),
    ("the seed paper's error-minimizing noise, by Adam (Appendix I)", ("errmin-adam",)),
    ("the seed paper's baselines: random, error-maximizing and mixed noise",
     ("random", "errmax-pgd", "errmax-universal", "mix-or", "mix-add")),
    ("the field's attacks since 2021", None),
)
# Attack lines per panel: tab10 less its grey (the clean baseline's band and chance are grey),
# and more lines than that do not read; a longer panel is cut in two.
MAX_LINES = 9

CLEAN_COLOUR, CHANCE_COLOUR, POISONED_COLOUR = "black", "0.45", "#d62728"


@dataclass(frozen=True)
class Figure:
    """One figure: its file name (stable: the markdown and the site link it), the alt text, a
    one-sentence caption saying what question it answers, and the SVG bytes."""

    name: str
    alt: str
    caption: str
    svg: bytes


# every name ``figures`` may return (``accuracy.svg`` and ``curves.svg`` are also the names the
# figures had before): a build removes those it did not write this time, so a folder holds
# exactly the figures its markdown links
NAMES = ("accuracy.svg", "curves.svg", "poison-rate.svg", "per-class.svg")


def figures(rows: pd.DataFrame, curves_dir: Path) -> list[Figure]:
    """The figures of one protocol's shown rows (``labelled(current_version(frame))``) whose
    question the rows can answer, in the order of the module docstring; ``curves_dir`` holds the
    runs' ``<run_id>.csv`` per-epoch curves."""
    if rows.empty:
        return []
    with _style():
        out = []
        for draw in (accuracy_figure, curves_figure, poison_rate_figure, per_class_figure):
            figure = draw(rows, Path(curves_dir))
            if figure is not None:
                out.append(figure)
        return out


# --- shared ----------------------------------------------------------------------------------


@contextmanager
def _style():
    """Matplotlib's defaults plus ``RC``, for drawing and saving only: a user's matplotlibrc
    must not change the committed bytes, and a caller's own settings are restored afterwards."""
    import matplotlib
    import matplotlib.style

    matplotlib.use("Agg")  # no display where leaderboards are built; never open a window
    with matplotlib.style.context(["default", RC]):
        yield


def _figure(width: float, height: float):
    # a bare Figure, not pyplot: nothing is registered globally, so nothing needs closing
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def _svg(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _palette(n: int) -> list:
    """``n`` distinct colours, none of them grey (the references are grey and black): tab10
    without its grey up to nine, tab20 without its greys up to eighteen, then they repeat
    (callers keep a panel to MAX_LINES series)."""
    from matplotlib import colormaps

    if n <= 9:
        return [colormaps["tab10"](i) for i in range(10) if i != 7][:n]
    colours = [colormaps["tab20"](i) for i in range(20) if i not in (14, 15)]
    return [colours[i % len(colours)] for i in range(n)]


def is_main(key) -> bool:
    """A group of the whole training set poisoned, every class, poisoned samples kept."""
    _, _, rate, classes, drop = key
    return float(rate) == 1.0 and not classes and not drop


def _clean(rows: pd.DataFrame, key) -> float | None:
    """The clean (no attack, no defense) mean of ``key``'s table, else of its dataset and
    victim's main table (the no-attack rows do not depend on the poison scope)."""
    for candidate in (key, (key[0], key[1], 1.0, "", False)):
        part = _group(rows, candidate)
        if len(part):
            stats = cell_stats(part)
            if ("none", "none") in stats.index:
                return float(stats.loc[("none", "none"), "mean"])
    return None


def _group(rows: pd.DataFrame, key) -> pd.DataFrame:
    mask = pd.Series(True, index=rows.index)
    for column, value in zip(GROUP, key, strict=True):
        mask &= (rows[column].astype(float) == float(value)) if column == "poison_rate" else (rows[column] == value)
    return rows[mask]


def _curve(curves_dir: Path, run_id: str) -> pd.DataFrame | None:
    path = curves_dir / f"{run_id}.csv"
    return pd.read_csv(path) if path.is_file() else None


def _reference_lines(ax, dataset: str, clean: float | None) -> None:
    chance = CHANCE.get(dataset)
    if clean is not None:
        ax.axhline(clean, color=CLEAN_COLOUR, linewidth=1, linestyle=":", label=f"clean baseline ({clean:.1f}%)")
    if chance is not None:
        ax.axhline(chance, linestyle="--", color=CHANCE_COLOUR, linewidth=1, label=f"chance ({chance:g}%)")


# --- accuracy.svg: attack × defense ------------------------------------------------------------

CELL_W, CELL_H = 0.56, 0.25  # inches per heatmap cell


def accuracy_figure(rows: pd.DataFrame, curves_dir: Path | None = None) -> Figure | None:
    """A heatmap of mean clean test accuracy (%) per table with more than one cell."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    panels = []
    for key, part in rows.groupby(GROUP, sort=True):
        stats = cell_stats(part)
        if len(stats) < 2:
            continue
        attacks = sorted(stats.index.get_level_values("attack_label").unique(), key=none_first)
        defenses = sorted(stats.index.get_level_values("defense").unique(), key=none_first)
        grid = np.full((len(attacks), len(defenses)), np.nan)
        for (attack, defense), mean in stats["mean"].items():
            grid[attacks.index(attack), defenses.index(defense)] = mean
        panels.append((key, attacks, defenses, grid))
    if not panels:
        return None
    cmap = colormaps["viridis"].with_extremes(bad="white")
    norm = Normalize(0, 100)
    widest = max(len(d) for _, _, d, _ in panels)
    label = max(len(a) for _, attacks, _, _ in panels for a in attacks)
    # a panel's height: its rows, the defense names above them (rotated 40°: ~0.07 in a character
    # at 9 pt, times sin 40°) and a three-line title; the cells keep their size (``aspect``), so a
    # panel given more height than this would only pad itself
    heights = [len(a) * CELL_H + 0.045 * max(len(x) for x in d) + 0.75 for _, a, d, _ in panels]
    title = max(len(group_title(key, quote="")) for key, *_ in panels)
    # at least as tall as the colour bar's label, as wide as the longest title
    fig = _figure(max(0.06 * label + widest * CELL_W + 1.6, 0.075 * title + 1.4), max(sum(heights), 2.6))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    titles = []
    for ax, (key, attacks, defenses, grid) in zip(axes, panels, strict=True):
        # cells as vector quads (not imshow's embedded bitmap): sharp at any zoom, and the SVG a
        # diff can read; cell (i, j) spans [j - 0.5, j + 0.5] × [i - 0.5, i + 0.5], row 0 on top
        edges = (np.arange(len(defenses) + 1) - 0.5, np.arange(len(attacks) + 1) - 0.5)
        image = ax.pcolormesh(*edges, np.ma.masked_invalid(grid), cmap=cmap, norm=norm)
        ax.set_xlim(edges[0][0], edges[0][-1])
        ax.set_ylim(edges[1][-1], edges[1][0])
        ax.set_aspect(CELL_H / CELL_W)
        ax.set_anchor("NW")  # every panel's first column under the one above
        for (i, j), mean in np.ndenumerate(grid):
            if not np.isnan(mean):
                r, g, b, _ = cmap(norm(mean))
                ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                ax.text(j, i, f"{mean:.1f}", ha="center", va="center", fontsize=7, color=ink)
        ax.set_xticks(range(len(defenses)), defenses, rotation=40, ha="left", rotation_mode="anchor")
        ax.set_yticks(range(len(attacks)), attacks, fontsize=8)
        ax.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False, length=0)
        ax.set_xticks(np.arange(len(defenses) + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(len(attacks) + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
        ax.spines[:].set_visible(False)
        clean, chance = _clean(rows, key), CHANCE.get(key[0])
        references = ([f"clean (attack none, defense none): {clean:.1f}%"] if clean is not None else []) + (
            [f"chance: {chance:g}% (dashed on the colour bar)"] if chance is not None else [])
        title = "\n".join([group_title(key, quote=""), *references])
        titles.append(ax.set_title(title, fontsize=9, loc="left"))
    bar = fig.colorbar(image, ax=list(axes), shrink=min(1.0, 4 / sum(heights) + 0.3), aspect=30, pad=0.02, panchor=False)
    bar.set_label("mean accuracy (%)")  # short: a small figure is barely taller than this
    for level in sorted({CHANCE.get(key[0]) for key, *_ in panels} - {None}):
        bar.ax.axhline(level, color="white", linewidth=1.2, linestyle="--")
    # the cells keep their aspect, so a panel narrower than its slot leaves a gap before the colour
    # bar: lay out once, and take the widest panel's slack off the figure's width, keeping every
    # title inside it (a title does not widen its axes' slot)
    fig.draw_without_rendering()
    width, height = fig.get_size_inches()
    slack = min(a.get_position(original=True).x1 - a.get_position().x1 for a in axes)
    needed = max(t.get_window_extent().x1 for t in titles) / fig.dpi + 0.1
    fig.set_size_inches(max(width - max(0.0, slack) * width, needed), height)
    return Figure(
        "accuracy.svg", "Heatmap of mean clean test accuracy per attack (rows) and defense (columns)",
        "How each attack fares under each defense: the tables' mean clean test accuracy (%) over seeds, "
        "darker is a stronger attack; blank cells were not run.", _svg(fig))


# --- curves.svg: accuracy per epoch, no defense --------------------------------------------------


def _mean_curves(part: pd.DataFrame, curves_dir: Path) -> pd.DataFrame | None:
    """Epochs as rows, the runs of ``part`` that have a curve file as columns (test accuracy, %)."""
    tables = []
    for run_id in part.sort_values(["seed", "run_id"])["run_id"]:
        curve = _curve(curves_dir, run_id)
        if curve is not None:
            tables.append(curve.set_index("epoch")["test_acc"].rename(run_id) * 100)
    return pd.concat(tables, axis=1) if tables else None  # an early-stopped run simply ends sooner


def curve_panels(labels: list[str], names: dict[str, str]) -> list[tuple[str, list[str]]]:
    """``labels`` (the clean baseline ``none`` left out: every panel draws it) split into
    CURVE_PANELS, each cut into panels of at most MAX_LINES attacks."""
    claimed = {n for _, panel in CURVE_PANELS if panel for n in panel}
    out = []
    for title, panel in CURVE_PANELS:
        mine = [lbl for lbl in labels if lbl != "none" and (names[lbl] in panel if panel else names[lbl] not in claimed)]
        chunks = math.ceil(len(mine) / MAX_LINES)
        for c in range(chunks):
            out.append((title + (f" ({c + 1}/{chunks})" if chunks > 1 else ""), mine[c * MAX_LINES:(c + 1) * MAX_LINES]))
    return out


def curves_figure(rows: pd.DataFrame, curves_dir: Path) -> Figure | None:
    """Clean test accuracy per epoch, defense ``none``, poison rate 1 (every class, nothing
    dropped): one line per attack, small multiples by family, the clean baseline in each."""
    from matplotlib.ticker import MaxNLocator

    panels = []
    for key, part in rows[rows["defense"] == "none"].groupby(GROUP, sort=True):
        if not is_main(key):
            continue
        curves = {}
        for label in sorted(part["attack_label"].unique(), key=none_first):
            table = _mean_curves(part[part["attack_label"] == label], curves_dir)
            if table is not None:
                curves[label] = table
        names = {lbl: part.loc[part["attack_label"] == lbl, "attack"].iloc[0] for lbl in curves}
        for title, labels in curve_panels(list(curves), names):
            if labels:
                panels.append((key, title, [(lbl, curves[lbl]) for lbl in labels], curves.get("none")))
    if not panels:
        return None
    tables = [t for *_, lines, clean in panels for t in [c for _, c in lines] + ([clean] if clean is not None else [])]
    top = max(t.max().max() for t in tables)
    fig = _figure(10, 2.5 * len(panels) + 0.3)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (key, title, lines, clean) in zip(axes, panels, strict=True):
        if clean is not None:
            _line(ax, clean, CLEAN_COLOUR, "none (clean baseline)", width=2.0)
        for colour, (label, table) in zip(_palette(len(lines)), lines, strict=True):
            _line(ax, table, colour, label)
        chance = CHANCE.get(key[0])
        if chance is not None:
            ax.axhline(chance, linestyle="--", color=CHANCE_COLOUR, linewidth=1, label=f"chance ({chance:g}%)")
        ax.set_ylim(0, min(100, 10 * math.ceil(top / 10) + 5))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
        ax.set_ylabel("clean test accuracy (%)")
        ax.set_title(f"{group_title(key, quote='')} · defense none · {title}", fontsize=9, loc="left")
        ax.grid(color="0.92", linewidth=0.6)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
        ax.tick_params(labelbottom=True)
    axes[-1].set_xlabel("epoch")
    return Figure(
        "curves.svg", "Clean test accuracy per epoch of a victim trained on each attack's poison, without a defense",
        "Does the victim learn the clean task while it trains on the poison? Clean test accuracy per epoch without "
        "a defense, one line per attack (mean over seeds, band: min–max), the clean baseline in black.", _svg(fig))


def _line(ax, table: pd.DataFrame, colour, label: str, width: float = 1.4) -> None:
    n = table.shape[1]
    ax.plot(table.index, table.mean(axis=1), color=colour, linewidth=width, label=f"{label} (n={n})")
    if n > 1:
        ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.15, linewidth=0)


# --- poison-rate.svg: accuracy against the poisoned fraction ----------------------------------


def poison_rate_points(rows: pd.DataFrame) -> dict[tuple, dict[bool, list[tuple[float, pd.Series]]]]:
    """(dataset, victim, attack label) → {drop_poisoned: [(rate, cell stats)] by rate} for the
    defense-``none``, every-class cells of each attack configuration measured at two or more
    poison rates (poisoned samples kept)."""
    found: dict[tuple, dict[bool, list]] = {}
    for key, part in rows[(rows["defense"] == "none") & (rows["poison_classes"] == "")].groupby(GROUP, sort=True):
        dataset, victim, rate, _, drop = key
        for (label, _), cell in cell_stats(part).iterrows():
            if label != "none":
                found.setdefault((dataset, victim, label), {}).setdefault(bool(drop), []).append((float(rate), cell))
    return {k: {d: sorted(p, key=lambda x: x[0]) for d, p in v.items()} for k, v in found.items()
            if len(v.get(False, [])) >= 2}


def poison_rate_figure(rows: pd.DataFrame, curves_dir: Path | None = None) -> Figure | None:
    """Accuracy without a defense against the poison rate, per attack configuration."""
    points = poison_rate_points(rows)
    if not points:
        return None
    boards = sorted({(d, v) for d, v, _ in points})
    lines = [sum(len(points[k]) for k in points if k[:2] == board) for board in boards]
    heights = [3.2 + 0.17 * (n + 2) for n in lines]  # the axes, and the legend below them
    fig = _figure(7, sum(heights) + 0.2)
    axes = fig.subplots(len(boards), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (dataset, victim) in zip(axes, boards, strict=True):
        configs = sorted((lbl for d, v, lbl in points if (d, v) == (dataset, victim)), key=none_first)
        rates = set()
        for i, (colour, label) in enumerate(zip(_palette(len(configs)), configs, strict=True)):
            for drop, cells in sorted(points[dataset, victim, label].items()):
                x = [r for r, _ in cells]
                rates.update(x)
                drawn = ax.errorbar(x, [c["mean"] for _, c in cells], yerr=[0 if pd.isna(c["sd"]) else c["sd"] for _, c in cells],
                                    color=colour, linestyle="--" if drop else "-", marker="s" if drop else "o",
                                    markerfacecolor="white" if drop else colour, capsize=3, linewidth=1.4,
                                    label=f"{label}, poisoned samples dropped (clean part only)" if drop else label)
                # the SVG group of the line and its markers: ``rate-<legend index>-kept|dropped``
                drawn.lines[0].set_gid(f"rate-{len(boards) > 1 and f'{boards.index((dataset, victim))}-' or ''}{i}-"
                                       f"{'dropped' if drop else 'kept'}")
        _reference_lines(ax, dataset, _clean(rows, (dataset, victim, 1.0, "", False)))
        ticks = sorted(rates | {i / 10 for i in range(11)})
        ax.set_xticks(ticks, [f"{100 * r:g}%" for r in ticks])
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(0, 100)
        ax.set_xlabel("poison rate (share of the training set poisoned)")
        ax.set_ylabel("clean test accuracy (%)")
        ax.set_title(f"{dataset} · victim {victim} · defense none, every class", fontsize=9, loc="left")
        ax.grid(color="0.92", linewidth=0.6)
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.16), frameon=False, fontsize=8)
    return Figure(
        "poison-rate.svg", "Clean test accuracy against the poison rate, per attack, without a defense",
        "How much of the training set must be poisoned? Clean test accuracy (mean ± sd over seeds) at each poison rate "
        "measured; hollow squares: the poisoned part dropped, training on the clean rest only.", _svg(fig))


# --- per-class.svg: a one-class poison, class by class ----------------------------------------


def _per_class(part: pd.DataFrame, curves_dir: Path) -> tuple[dict[int, float], int]:
    """Mean test accuracy (%) per class index over the runs of ``part`` that have a curve, each at
    the epoch whose weights it ended with (``selected_epoch``, else its last), and that count."""
    values: dict[int, list[float]] = {}
    runs = 0
    for row in part.sort_values(["seed", "run_id"]).to_dict("records"):
        curve = _curve(curves_dir, row["run_id"])
        columns = [] if curve is None else [c for c in curve.columns if c.startswith("test_acc_c")]
        if not columns:
            continue
        selected = row.get("selected_epoch")
        final = curve[curve["epoch"] == int(float(selected))] if not pd.isna(selected) and selected != "" else curve.tail(0)
        final = final if len(final) else curve.tail(1)
        runs += 1
        for column in columns:
            values.setdefault(int(column[len("test_acc_c"):]), []).append(100 * float(final[column].iloc[0]))
    return {k: sum(v) / len(v) for k, v in sorted(values.items())}, runs


def class_names(dataset: str) -> tuple[str, ...]:
    """The dataset's class names, from its plugin (imports torch); empty if it is not installed."""
    from uebench.plugins import get_host

    try:
        return tuple(get_host().datasets.get(dataset).cls.classes)
    except Exception:  # noqa: BLE001 - a dataset of a plugin not installed here: classes by index
        return ()


def per_class_figure(rows: pd.DataFrame, curves_dir: Path) -> Figure | None:
    """Per-class test accuracy of each cell that poisons some classes only, beside the clean
    baseline of its dataset and victim."""
    import numpy as np

    panels = []
    for key, part in rows[rows["poison_classes"] != ""].groupby(GROUP, sort=True):
        stats = cell_stats(part)
        for (label, defense), cell in stats.iterrows():
            mine = part[(part["attack_label"] == label) & (part["defense"] == defense)]
            values, runs = _per_class(mine, curves_dir)
            if not runs:
                continue
            base = _group(rows, (key[0], key[1], key[2], "", key[4]))
            if not len(base[(base["attack_label"] == "none") & (base["defense"] == "none")]):
                base = _group(rows, (key[0], key[1], 1.0, "", False))
            base = base[(base["attack_label"] == "none") & (base["defense"] == "none")]
            clean, clean_runs = _per_class(base, curves_dir)
            clean_mean = float(cell_stats(base).loc[("none", "none"), "mean"]) if len(base) else None
            panels.append((key, label, defense, cell, values, runs, clean, clean_runs, clean_mean))
    if not panels:
        return None
    names_of = {key[0]: class_names(key[0]) for key, *_ in panels}
    fig = _figure(9.5, 3.0 * len(panels) + 0.3)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    clean_colour, poison_colour = "0.6", _palette(1)[0]  # grey: the baseline; tab10's blue: the poisoned cell
    for ax, (key, label, defense, cell, values, runs, clean, clean_runs, clean_mean) in zip(axes, panels, strict=True):
        names = names_of[key[0]]
        classes = sorted(set(values) | set(clean))
        text = [names[k] if k < len(names) else str(k) for k in classes]
        poisoned = {c.strip() for c in key[3].split(",") if c.strip()}  # names, as rows record them
        marked = [t in poisoned or str(k) in poisoned for k, t in zip(classes, text, strict=True)]
        x = np.arange(len(classes))
        for i in np.flatnonzero(marked):
            ax.axvspan(i - 0.5, i + 0.5, color=POISONED_COLOUR, alpha=0.10, linewidth=0)
        series = []
        if clean:
            overall = f"; overall {clean_mean:.1f}%" if clean_mean is not None else ""
            series.append((f"clean baseline: attack none, defense none (n={clean_runs}{overall})", clean, clean_colour))
        series.append((f"{label} on {key[3]}, defense {defense} (n={runs}; overall {cell['mean']:.1f}%)", values,
                       poison_colour))
        width = 0.8 / len(series)
        for i, (name, per_class, colour) in enumerate(series):
            offset = (i - (len(series) - 1) / 2) * width
            bars = ax.bar([x[classes.index(k)] + offset for k in per_class], list(per_class.values()), width=width,
                          color=colour, label=name)
            ax.bar_label(bars, fmt="%.0f", padding=1, fontsize=6.5)
        ax.set_xticks(x, [f"{t}\n(poisoned)" if m else t for t, m in zip(text, marked, strict=True)])
        for tick, m in zip(ax.get_xticklabels(), marked, strict=True):
            if m:
                tick.set_color(POISONED_COLOUR)
                tick.set_fontweight("bold")
        _reference_lines(ax, key[0], None)
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy of the class (%)")
        ax.set_title(f"{group_title(key, quote='')} · attack {label} · defense {defense}", fontsize=9, loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.22), frameon=False, fontsize=8, ncols=1)
    return Figure(
        "per-class.svg", "Per-class test accuracy of a victim trained on a one-class poison, beside the clean baseline",
        "Does a poison on one class hurt only that class? Test accuracy per class (mean over seeds) at the epoch each "
        "run ended with; the poisoned class is marked in red.", _svg(fig))
