"""Leaderboard figures (``uebench.plots.figures``): ``uebench leaderboard build`` writes each into
``<protocol>/`` beside ``results.csv`` and the markdown embeds exactly those.

Rows are written with the real ``append_row`` and curves with the real ``write_curve`` (the
writers ``uebench run`` uses); the SVGs are read back as XML and checked by what they draw: the
text (kept as ``<text>``), the colours of the plotted paths, the markers of each series.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from test_leaderboard import _row, _sections

from conftest import REPO
from uebench import plots
from uebench.leaderboard import build
from uebench.results import append_row, write_curve
from uebench.stats import current_version, labelled

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"
FIGURES = ["accuracy.svg", "curves.svg", "poison-rate.svg", "per-class.svg"]
MAIN = "cifar10 · victim `resnet18` · poison rate 1"

# (attack, attack options, defense, seed, clean test accuracy, has a curve file, scope)
CELLS = [
    ("none", {}, "none", 0, 0.66, True, {}),
    ("none", {}, "none", 1, 0.70, False, {}),
    ("errmin-pgd", {"form": "class", "model_steps": 4}, "none", 0, 0.31, True, {}),
    ("errmin-pgd", {"form": "class", "model_steps": 10}, "none", 0, 0.27, False, {}),
    ("errmin-pgd", {"form": "sample"}, "cutmix", 0, 0.22, True, {}),
    ("errmin-pgd", {"form": "sample"}, "none", 0, 0.20, True, {}),
    ("errmin-pgd", {"form": "sample"}, "none", 1, 0.24, True, {}),
    # Table 2: half the set poisoned, and the clean half alone
    ("errmin-pgd", {"form": "sample"}, "none", 0, 0.60, False, {"rate": 0.5}),
    ("errmin-pgd", {"form": "sample"}, "none", 0, 0.55, False, {"rate": 0.5, "drop": True}),
    # Figure 2: one class (bird, index 2) poisoned
    ("errmin-pgd", {"form": "class", "model_steps": 4}, "none", 0, 0.60, True, {"classes": "bird"}),
]
# The attack labels the markdown uses (distinguish_variants splits the two errmin-pgd form=class;
# the tables sort model_steps=10 before model_steps=4).
LABELS = ["none", "errmin-pgd form=class [model_steps=4]", "errmin-pgd form=class [model_steps=10]",
          "errmin-pgd form=sample"]


def _write(root, cells=CELLS, dataset="cifar10"):
    for i, (attack, options, defense, seed, acc, curve, scope) in enumerate(cells):
        row = _row(i, attack=attack, defense=defense, seed=seed, acc=acc, dataset=dataset, rate=scope.get("rate", 1.0))
        row.update(attack_options=json.dumps(options, sort_keys=True, separators=(",", ":")),
                   poison_classes=scope.get("classes", ""), drop_poisoned=scope.get("drop", False), selected_epoch=3)
        append_row(root / "cpu" / "results.csv", row)
        if curve:  # test accuracy climbs towards the final accuracy over three epochs, every class alike
            poisoned = 2 if scope.get("classes") else None  # …but a poisoned class ends at 5%
            history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.3 * e, "test_acc": acc * e / 3, "lr": 0.05,
                        "seconds": 1.0 * e, **{f"test_acc_c{k}": (0.05 if k == poisoned else acc) * e / 3 for k in range(10)}}
                       for e in (1, 2, 3)]
            write_curve(root / "cpu" / "curves" / f"{row['run_id']}.csv", history)
    return root


@pytest.fixture
def root(tmp_path):
    return _write(tmp_path / "leaderboards")


def _texts(path) -> list[str]:
    """Every piece of text the SVG draws; it must parse as XML for this to work at all."""
    return ["".join(e.itertext()) for e in ET.parse(path).iter(f"{SVG}text")]


def _style(element) -> dict:
    return dict(part.strip().split(": ") for part in (element.get("style") or "").split(";") if part.strip())


def _tick_texts(path, axis: str) -> list[str]:
    """The tick labels of every ``axis`` ("x" or "y") in the SVG, in document order (each tick is a
    ``<g id="xtick_N">``; minor ticks have none); a multi-line label's lines joined by a newline."""
    labels = ["\n".join("".join(e.itertext()) for e in g.iter(f"{SVG}text"))
              for g in ET.parse(path).iter(f"{SVG}g") if re.fullmatch(f"{axis}tick_\\d+", g.get("id") or "")]
    return [label for label in labels if label]


def _drawn_texts(path) -> list[str]:
    """The text drawn inside the axes (annotations, bar labels): every text but ticks' and titles'."""
    tree = ET.parse(path)
    skip = set()
    for g in tree.iter(f"{SVG}g"):
        if re.match(r"[xy]tick_", g.get("id") or ""):
            skip.update(id(e) for e in g.iter(f"{SVG}text"))
    return ["".join(e.itertext()) for e in tree.iter(f"{SVG}text") if id(e) not in skip]


def _links(markdown: str) -> list[str]:
    return re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", markdown, flags=re.M)


# --- the set of figures and the markdown ------------------------------------------------------


def test_build_writes_each_figure_and_the_markdown_links_exactly_those(root):
    written = build(root)
    assert written == [root / "cpu" / name for name in FIGURES] + [root / "cpu.md"]
    markdown = (root / "cpu.md").read_text()
    head, _, _ = markdown.partition("\n## ")  # above the first table
    assert _links(markdown) == _links(head) == [f"cpu/{name}" for name in FIGURES]
    for name in FIGURES:  # each resolves from the markdown's own folder and is an SVG
        assert ET.parse(root / "cpu" / name).getroot().tag == f"{SVG}svg"
    assert sorted(p.name for p in (root / "cpu").glob("*.svg")) == sorted(FIGURES)
    figures = plots.figures(labelled(current_version(pd.read_csv(root / "cpu" / "results.csv"))), root / "cpu" / "curves")
    for figure in figures:  # the alt text and the caption saying which question it answers
        assert f"![{figure.alt}](cpu/{figure.name})" in markdown and f"*{figure.caption}*" in markdown
        assert figure.svg == (root / "cpu" / figure.name).read_bytes()


def test_a_figure_without_data_is_neither_written_nor_linked_and_a_stale_one_is_removed(tmp_path):
    """One cell, no curve: no table with two cells, nothing per epoch, one rate, no one-class poison."""
    root = _write(tmp_path, cells=[("errmin-pgd", {"form": "sample"}, "none", 0, 0.4, False, {})])
    (root / "cpu" / "accuracy.svg").write_text("<svg>from an older build</svg>\n")
    (root / "cpu" / "notes.svg").write_text("not ours\n")
    assert build(root) == [root / "cpu.md"]
    assert "![" not in (root / "cpu.md").read_text()
    assert sorted(p.name for p in (root / "cpu").glob("*.svg")) == ["notes.svg"]  # only the figures' names are removed


def test_rebuilding_gives_byte_identical_figures(root):
    build(root)
    first = {p.name: p.read_bytes() for p in (root / "cpu").glob("*.svg")}
    assert sorted(first) == sorted(FIGURES)
    for name in first:
        (root / "cpu" / name).write_text("stale\n")
    build(root)
    assert {p.name: p.read_bytes() for p in (root / "cpu").glob("*.svg")} == first
    assert not [name for name, svg in first.items() if b"<dc:date>" in svg]  # no timestamp to make builds differ


def test_importing_uebench_does_not_import_matplotlib():
    code = "import sys, uebench, uebench.leaderboard, uebench.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


# --- accuracy.svg: the tables as heatmaps ------------------------------------------------------


def test_heatmap_holds_the_markdowns_numbers_cell_by_cell(root):
    build(root)
    table = _sections((root / "cpu.md").read_text())[MAIN]
    defenses = table[0].strip("|").split("|")[1:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    texts = _texts(root / "cpu" / "accuracy.svg")
    # the cells' annotations, row by row, are the markdown's means to one decimal; "—" is blank
    expected = [f"{float(cell.split()[0]):.1f}" for _, *cells in rows for cell in cells if cell != "—"]
    assert [t for t in texts if re.fullmatch(r"\d+\.\d", t)] == expected == ["68.0", "27.0", "31.0", "22.0", "22.0"]
    assert [t for t in _tick_texts(root / "cpu" / "accuracy.svg", "y") if not t.isdigit()] == [  # rows, then the colour bar
        label for label, *_ in rows] == [LABELS[i] for i in (0, 2, 1, 3)]
    assert _tick_texts(root / "cpu" / "accuracy.svg", "x") == [d.strip() for d in defenses] == ["none", "cutmix"]
    # the clean reference is in the panel's title; a table of one cell gets no panel
    assert (f"{MAIN.replace('`', '')}\nclean (attack none, defense none): 68.0%\nchance: 10% (dashed on the colour bar)"
            in _multiline(root / "cpu" / "accuracy.svg"))
    assert not [t for t in texts if "poison rate 0.5" in t or " of bird" in t]


def _multiline(path) -> list[str]:
    """Text of each ``<g>`` that holds several ``<text>`` lines (a multi-line title), joined by newlines."""
    out = []
    for group in ET.parse(path).iter(f"{SVG}g"):
        lines = [e for e in group if e.tag == f"{SVG}text"]
        if len(lines) > 1:
            out.append("\n".join("".join(e.itertext()) for e in lines))
    return out


# --- curves.svg: Figure 1 -----------------------------------------------------------------------


def _series(svg) -> list[list[dict]]:
    """Per axes, in drawing order, the style of each solid data line (a ``line2d`` of the axes
    itself, not of a tick or grid line: a stroked path clipped to the axes, no dashes): the series
    a reader tells apart by colour."""
    out = []
    for axes in ET.parse(svg).iter(f"{SVG}g"):
        if not (axes.get("id") or "").startswith("axes_"):
            continue
        lines = []
        for line in axes:
            if not (line.get("id") or "").startswith("line2d_"):
                continue
            for element in line.iter(f"{SVG}path"):
                style = _style(element)
                if element.get("clip-path") and style.get("fill") == "none" and "stroke-dasharray" not in style:
                    lines.append(style)
        out.append(lines)
    return out


def test_curves_are_one_line_per_attack_without_a_defense_each_its_own_colour(root):
    build(root)
    svg = root / "cpu" / "curves.svg"
    texts = _texts(svg)
    # the seed paper's PGD error-minimizing noise: the attacks with a curve at 100%, defense none;
    # the clean baseline in every panel; nothing under a defense, at another rate or on one class
    assert [t for t in texts if t.endswith(")") and "(n=" in t] == [
        "none (clean baseline) (n=1)", "errmin-pgd form=class [model_steps=4] (n=1)", "errmin-pgd form=sample (n=2)"]
    assert not [t for t in texts if "model_steps=10" in t]  # no curve file: no line, not counted
    assert "chance (10%)" in texts
    (lines,) = [s for s in _series(svg) if s]
    colours = [line["stroke"] for line in lines]
    assert len(colours) == 3 and len(set(colours)) == 3
    assert colours[0] == "#000000"  # the clean baseline is black


def test_a_cell_is_its_mean_curve_and_a_band_over_its_seeds(root):
    build(root)
    svg = root / "cpu" / "curves.svg"
    bands = [_style(e) for e in ET.parse(svg).iter() if e.tag in (f"{SVG}path", f"{SVG}use") and "fill-opacity" in _style(e)]
    assert len(bands) == 1  # only errmin-pgd form=sample has two seeds with a curve
    (lines,) = [s for s in _series(svg) if s]
    assert bands[0]["fill"] == lines[2]["stroke"]  # the band is its line's colour


def test_many_attacks_are_split_so_that_no_panel_repeats_a_colour():
    names = {f"random [patch={k}]": "random" for k in range(12)} | {"tap": "tap", "errmin-pgd form=class": "errmin-pgd"}
    panels = plots.curve_panels(sorted(names), names)
    assert [len(labels) for _, labels in panels] == [1, 9, 3, 1]
    assert [title for title, _ in panels][1:3] == [
        "the seed paper's baselines: random, error-maximizing and mixed noise (1/2)",
        "the seed paper's baselines: random, error-maximizing and mixed noise (2/2)"]
    for n in (1, 9, 18):
        colours = plots._palette(n)
        assert len(set(colours)) == n
        assert not [c for c in colours if c[0] == c[1] == c[2]]  # no grey: the references are grey


# --- poison-rate.svg: Table 2 ----------------------------------------------------------------------


def test_poison_rate_figure_has_one_point_per_rate_and_the_dropped_set_apart(root):
    build(root)
    svg = root / "cpu" / "poison-rate.svg"
    texts = _texts(svg)
    # errmin-pgd form=sample is measured at 50% and 100%; form=class [model_steps=4] only at 100%
    # (its one-class cell is Figure 2's): not a line here
    assert "errmin-pgd form=sample" in texts
    assert "errmin-pgd form=sample, poisoned samples dropped (clean part only)" in texts
    assert not [t for t in texts if "model_steps" in t]
    assert "clean baseline (68.0%)" in texts and "chance (10%)" in texts
    series = {g.get("id"): g for g in ET.parse(svg).iter(f"{SVG}g") if (g.get("id") or "").startswith("rate-")}
    assert sorted(series) == ["rate-0-dropped", "rate-0-kept"]
    kept, dropped = ([_style(u) for u in series[k].iter(f"{SVG}use")] for k in ("rate-0-kept", "rate-0-dropped"))
    assert len(kept) == 2 and len(dropped) == 1  # one marker per rate measured
    assert kept[0]["fill"] == kept[0]["stroke"]  # filled circles
    assert dropped[0]["fill"] == "#ffffff" and dropped[0]["stroke"] == kept[0]["stroke"]  # hollow, the same colour
    # the markers sit at x = 50% and 100% of the axis, in order
    xs = [float(u.get("x")) for u in series["rate-0-kept"].iter(f"{SVG}use")]
    assert xs[0] < xs[1] and float(next(series["rate-0-dropped"].iter(f"{SVG}use")).get("x")) == pytest.approx(xs[0])


def test_poison_rate_points_read_the_tables_statistics(root):
    rows = labelled(current_version(pd.read_csv(root / "cpu" / "results.csv")))
    points = plots.poison_rate_points(rows)
    assert list(points) == [("cifar10", "resnet18", "errmin-pgd form=sample")]
    kept = points["cifar10", "resnet18", "errmin-pgd form=sample"]
    assert [(rate, round(cell["mean"], 6), int(cell["n"])) for rate, cell in kept[False]] == [(0.5, 60.0, 1), (1.0, 22.0, 2)]
    assert [(rate, round(cell["mean"], 6)) for rate, cell in kept[True]] == [(0.5, 55.0)]


# --- per-class.svg: Figure 2 --------------------------------------------------------------------


def test_per_class_figure_marks_the_poisoned_class_beside_the_clean_baseline(root):
    build(root)
    svg = root / "cpu" / "per-class.svg"
    texts = _texts(svg)
    marked = [e for e in ET.parse(svg).iter(f"{SVG}text") if _style(e).get("fill") == "#d62728"]
    assert ["".join(e.itertext()) for e in marked] == ["bird", "(poisoned)"]  # the class names from the dataset
    assert {"airplane", "automobile", "cat", "truck"} <= set(texts)
    assert "clean baseline: attack none, defense none (n=1; overall 68.0%)" in texts
    assert "errmin-pgd form=class [model_steps=4] on bird, defense none (n=1; overall 60.0%)" in texts
    # bar labels, per class: the clean run at 66% everywhere; the poisoned one at 60%, bird at 5%
    values = [t for t in _drawn_texts(svg) if re.fullmatch(r"\d+", t)]
    assert sorted(values) == sorted(["66"] * 10 + ["60"] * 9 + ["5"])


def test_unknown_dataset_gets_classes_by_index_and_no_chance_line(tmp_path):
    """A dataset whose plugin is not installed here: its classes are indices, its poisoned class
    (a name) is in the panel's title, and there is no chance line rather than a wrong one."""
    cells = [("none", {}, "none", 0, 0.5, True, {}), ("random", {}, "none", 0, 0.45, True, {}),
             ("random", {}, "none", 0, 0.4, True, {"classes": "cat"})]
    root = _write(tmp_path, cells=cells, dataset="tiny-set")
    assert build(root) == [root / "cpu" / n for n in ("accuracy.svg", "curves.svg", "per-class.svg")] + [root / "cpu.md"]
    ticks = _tick_texts(root / "cpu" / "per-class.svg", "x")
    assert ticks == [str(k) for k in range(10)]
    assert "tiny-set · victim resnet18 · poison rate 1 of cat · attack random · defense none" in _texts(
        root / "cpu" / "per-class.svg")
    for name in ("accuracy.svg", "curves.svg", "per-class.svg"):
        assert not [t for t in _texts(root / "cpu" / name) if t.startswith("chance")]
