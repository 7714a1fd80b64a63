"""Leaderboard plots: the table's numbers as bars, and every run's per-epoch curve.

``uebench leaderboard build`` writes two SVGs beside each ``<protocol>/results.csv`` and the
markdown embeds them, because a gap between bars (or a curve still climbing at the last epoch)
is read at a glance where a table has to be read cell by cell:

* ``accuracy.svg`` — one panel per dataset × victim × poison rate (the markdown's sections, in
  the same order), attacks down the side with the markdown's labels, one bar per defense, mean
  clean test accuracy (%) over seeds with a ±1 sample standard deviation error bar; a dashed
  line at chance and a dotted line at the clean (``none`` attack, ``none`` defense) accuracy
  where the panel has one.
* ``curves.svg`` — clean test accuracy per epoch, one panel per group × attack that has curves,
  one colour per defense: the mean over the cell's runs (those whose ``curves/<run_id>.csv``
  exists) as a line, their min–max range as a band.  (One line per run was unreadable at 30
  runs; a panel per attack keeps the defenses of one attack side by side.)

Why a module of its own: matplotlib takes longer to import than the rest of uebench's CLI
start-up and only this command needs it, so it is imported inside the functions here, never at
``import uebench`` time. Why these settings: the files are committed and a test rebuilds them,
so they must be byte-identical from one build to the next (a fixed ``svg.hashsalt`` for the
element ids, no date in the metadata), and text is kept as SVG text rather than glyph outlines
(``svg.fonttype = "none"``) so a diff or a grep of the committed file shows the labels.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from uebench.stats import GROUP, cell_stats, group_title, none_first

# Accuracy (%) of guessing, per dataset. Results rows carry no class count, so it lives here; a
# dataset not listed gets no chance line rather than a wrong one.
CHANCE = {"cifar10": 10.0}

RC = {
    "svg.hashsalt": "uebench",  # element ids are hashes salted with this (random by default)
    "svg.fonttype": "none",  # text as <text>, not glyph paths
    "font.size": 9,
}


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
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _message(text: str) -> bytes:
    """A small figure that says why there is nothing to plot (the markdown links it anyway)."""
    fig = _figure(6, 1)
    fig.text(0.5, 0.5, text, ha="center", va="center")
    return _svg(fig)


def _reference_lines(ax, dataset: str, clean: float | None) -> None:
    chance = CHANCE.get(dataset)
    if chance is not None:
        ax.axvline(chance, linestyle="--", color="0.45", linewidth=1, label=f"chance ({chance:g}%)", zorder=3)
    if clean is not None:
        ax.axvline(clean, linestyle=":", color="black", linewidth=1.2, label=f"clean ({clean:.1f}%)", zorder=3)


def accuracy_svg(frame: pd.DataFrame) -> bytes:
    """Grouped horizontal bars of mean final clean test accuracy (%); ``frame`` is a results
    frame with the ``attack_label`` column of ``uebench.stats.labelled``."""
    with _style():
        groups = list(frame.groupby(GROUP, sort=True))
        if not groups:
            return _message("no results rows yet")
        layout = []
        for key, part in groups:
            attacks = sorted(part["attack_label"].unique(), key=none_first)
            defenses = sorted(part["defense"].unique(), key=none_first)
            layout.append((key, part, attacks, defenses))
        heights = [0.9 + 0.2 * len(a) * len(d) + 0.1 * len(a) for _, _, a, d in layout]
        fig = _figure(8, sum(heights) + 0.2)
        axes = fig.subplots(len(layout), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, (key, part, attacks, defenses) in zip(axes, layout, strict=True):
            dataset = key[0]
            stats = cell_stats(part)
            means, sds = stats["mean"], stats["sd"].fillna(0.0)  # one seed: no error bar
            width = 0.8 / len(defenses)
            for j, defense in enumerate(defenses):
                cells = [(i, means[a, defense], sds[a, defense]) for i, a in enumerate(attacks) if (a, defense) in means.index]
                offset = (j - (len(defenses) - 1) / 2) * width
                bars = ax.barh([i + offset for i, _, _ in cells], [m for _, m, _ in cells], height=width,
                               xerr=[s for _, _, s in cells], error_kw={"elinewidth": 0.8, "capsize": 2},
                               color=f"C{j}", label=f"defense {defense}")
                ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=7)
            _reference_lines(ax, dataset, means.get(("none", "none")))
            ax.set_yticks(range(len(attacks)), attacks)
            ax.set_ylim(len(attacks) - 0.5, -0.5)  # first attack (the baseline) at the top
            ax.set_xlim(0, 100)
            ax.set_xlabel("clean test accuracy (%), mean ± sd over seeds")
            ax.set_title(group_title(key, quote=""))
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
        return _svg(fig)


def defense_colour(index: int):
    """Colour ``index`` of a panel's defenses: matplotlib's 20-colour qualitative palette (a
    panel holds every defense, more than the 10 default colours)."""
    from matplotlib import colormaps

    return colormaps["tab20"](index % 20)


def curves_svg(frame: pd.DataFrame, curves: Path) -> bytes:
    """Clean test accuracy (%) per epoch: one panel per group × attack (the markdown's rows), one
    colour per defense, the mean over that cell's runs as a line and their range (min–max over
    seeds) as a band.  Rows whose ``curves/<run_id>.csv`` is missing are left out (and not
    counted in n)."""
    with _style():
        panels = []
        for key, part in frame.groupby(GROUP, sort=True):
            part = part.assign(_curve=[Path(curves) / f"{run_id}.csv" for run_id in part["run_id"]])
            part = part[[path.is_file() for path in part["_curve"]]]
            for attack in sorted(part["attack_label"].unique(), key=none_first):
                rows = part[part["attack_label"] == attack]
                cells = []
                for defense in sorted(rows["defense"].unique(), key=none_first):
                    runs = rows[rows["defense"] == defense].sort_values(["seed", "run_id"])
                    # epochs as rows, runs as columns (an early-stopped run simply ends sooner)
                    table = pd.concat([pd.read_csv(c).set_index("epoch")["test_acc"] for c in runs["_curve"]], axis=1) * 100
                    cells.append((defense, table))
                panels.append((key, attack, cells))
        if not panels:
            return _message(f"no per-epoch curves in {Path(curves).name}/")
        heights = [max(2.6, 0.8 + 0.2 * len(cells)) for _, _, cells in panels]
        fig = _figure(9, sum(heights) + 0.2)
        axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, (key, attack, cells) in zip(axes, panels, strict=True):
            for i, (defense, table) in enumerate(cells):
                colour, n = defense_colour(i), table.shape[1]
                ax.plot(table.index, table.mean(axis=1), color=colour, linewidth=1.4, label=f"{defense} (n={n})")
                if n > 1:
                    ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.18, linewidth=0)
            chance = CHANCE.get(key[0])
            if chance is not None:
                ax.axhline(chance, linestyle="--", color="0.45", linewidth=1, label=f"chance ({chance:g}%)")
            ax.set_ylim(0, 100)
            ax.set_xlabel("epoch")
            ax.set_ylabel("clean test accuracy (%)")
            ax.set_title(f"{group_title(key, quote='')} · attack {attack}")
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
        return _svg(fig)
