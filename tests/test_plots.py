"""Leaderboard plots: ``uebench leaderboard build`` writes ``<protocol>/accuracy.svg`` and
``<protocol>/curves.svg`` beside each ``results.csv``, and the markdown embeds them.

Rows are written with the real ``append_row`` and curves with the real ``write_curve`` (the
writers ``uebench run`` uses); the SVGs are read back as XML and checked by the text they draw.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from test_leaderboard import _row

from conftest import REPO
from uebench.leaderboard import build
from uebench.results import append_row, write_curve

SVG = "{http://www.w3.org/2000/svg}"

# (attack, attack options, defense, seed, clean test accuracy, has a curve file)
CELLS = [
    ("none", {}, "none", 0, 0.66, True),
    ("none", {}, "none", 1, 0.70, False),
    ("errmin-pgd", {"form": "class", "model_steps": 4}, "none", 0, 0.31, True),
    ("errmin-pgd", {"form": "class", "model_steps": 10}, "none", 0, 0.27, False),
    ("errmin-pgd", {"form": "sample"}, "cutmix", 0, 0.22, True),
]
# The attack labels the markdown uses (distinguish_variants splits the two errmin-pgd form=class).
LABELS = ["none", "errmin-pgd form=class [model_steps=4]", "errmin-pgd form=class [model_steps=10]",
          "errmin-pgd form=sample"]


def _write(root, cells=CELLS, dataset="cifar10"):
    for i, (attack, options, defense, seed, acc, curve) in enumerate(cells):
        row = _row(i, attack=attack, defense=defense, seed=seed, acc=acc, dataset=dataset)
        row["attack_options"] = json.dumps(options, sort_keys=True, separators=(",", ":"))
        append_row(root / "cpu" / "results.csv", row)
        if curve:  # test accuracy climbs towards the final accuracy over three epochs
            history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.3 * e, "test_acc": acc * e / 3,
                        "lr": 0.05, "seconds": 1.0 * e} for e in (1, 2, 3)]
            write_curve(root / "cpu" / "curves" / f"{row['run_id']}.csv", history)
    return root


@pytest.fixture
def root(tmp_path):
    return _write(tmp_path / "leaderboards")


def _texts(path) -> list[str]:
    """Every piece of text the SVG draws; it must parse as XML for this to work at all."""
    return ["".join(e.itertext()) for e in ET.parse(path).iter(f"{SVG}text")]


def test_build_writes_both_plots_with_the_markdown_labels(root):
    written = build(root)
    accuracy, curves = root / "cpu" / "accuracy.svg", root / "cpu" / "curves.svg"
    assert written == [accuracy, curves, root / "cpu.md"]
    assert ET.parse(accuracy).getroot().tag == f"{SVG}svg"
    assert ET.parse(curves).getroot().tag == f"{SVG}svg"

    bars = _texts(accuracy)
    for label in LABELS:  # tick labels, exactly as the markdown's rows
        assert label in bars
        assert f"| {label} |" in (root / "cpu.md").read_text()
    assert {"defense none", "defense cutmix"} <= set(bars)
    assert "cifar10 · victim resnet18 · poison rate 1" in bars
    assert "68.0" in bars  # none/none: mean of 66 and 70 over the two seeds
    assert "chance (10%)" in bars and "clean (68.0%)" in bars

    lines = _texts(curves)
    title = "cifar10 · victim resnet18 · poison rate 1 · attack "
    # a panel per attack that has curves (the markdown's labels), a legend entry per defense
    assert [t[len(title):] for t in lines if t.startswith(title)] == [
        "none", "errmin-pgd form=class [model_steps=4]", "errmin-pgd form=sample"]
    assert lines.count("none (n=1)") == 2 and "cutmix (n=1)" in lines
    # rows without a curve file get no line and are not counted: none/none has one curve of two rows
    assert not [t for t in lines if "model_steps=10" in t]


def test_markdown_embeds_both_plots_by_relative_links(root):
    build(root)
    markdown = (root / "cpu.md").read_text()
    head, _, _ = markdown.partition("\n## ")  # above the first table
    links = [line for line in head.splitlines() if line.startswith("![")]
    assert [line[line.index("](") + 2:-1] for line in links] == ["cpu/accuracy.svg", "cpu/curves.svg"]
    for line in links:  # each resolves from the markdown's own folder
        assert (root / line[line.index("](") + 2:-1]).is_file()


def test_rebuilding_gives_byte_identical_plots(root):
    build(root)
    first = {p.name: p.read_bytes() for p in (root / "cpu").glob("*.svg")}
    assert sorted(first) == ["accuracy.svg", "curves.svg"]
    for name in first:
        (root / "cpu" / name).write_text("stale\n")
    build(root)
    assert {p.name: p.read_bytes() for p in (root / "cpu").glob("*.svg")} == first
    assert b"<dc:date>" not in first["accuracy.svg"]  # no timestamp to make builds differ


def test_unknown_dataset_gets_no_chance_line_and_no_clean_line_without_a_baseline(tmp_path):
    root = _write(tmp_path, cells=[("errmin-pgd", {"form": "sample"}, "none", 0, 0.4, False)], dataset="tiny-set")
    build(root)
    bars = _texts(root / "cpu" / "accuracy.svg")
    assert "errmin-pgd form=sample" in bars
    assert not [t for t in bars if t.startswith(("chance (", "clean ("))]


def test_without_curve_files_curves_svg_says_so(tmp_path):
    root = _write(tmp_path, cells=[(a, o, d, s, acc, False) for a, o, d, s, acc, _ in CELLS])
    build(root)
    assert _texts(root / "cpu" / "curves.svg") == ["no per-epoch curves in curves/"]
    assert "![" in (root / "cpu.md").read_text()  # the link still resolves to that message


def test_importing_uebench_does_not_import_matplotlib():
    code = "import sys, uebench, uebench.leaderboard, uebench.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def _data_paths(svg) -> list[dict]:
    """The style of each plotted line and band, in drawing order: lines are paths clipped to the
    axes themselves (ticks and frames are not clipped), bands ``<use>`` of a path inside a
    clipped group."""
    out = []

    def walk(element, clipped):
        for child in element:
            inside = clipped or bool(child.get("clip-path"))
            if child.tag in (f"{SVG}path", f"{SVG}use") and inside and child.get("style"):
                out.append(dict(part.strip().split(": ") for part in child.get("style").split(";") if part.strip()))
            walk(child, inside)

    walk(ET.parse(svg).getroot(), False)
    return out


def test_a_cell_is_its_mean_curve_and_a_band_over_its_seeds(tmp_path):
    cells = [("none", {}, "none", 0, 0.66, True), ("none", {}, "none", 1, 0.70, True),
             ("none", {}, "cutmix", 0, 0.60, True)]
    root = _write(tmp_path, cells=cells)
    build(root)
    paths = _data_paths(root / "cpu" / "curves.svg")
    bands = [p for p in paths if "fill-opacity" in p]
    lines = [p for p in paths if p.get("fill") == "none"]
    assert len(bands) == 1  # only none/none has two seeds
    none_line, cutmix_line, chance = lines
    assert none_line["stroke"] != cutmix_line["stroke"]  # one colour per defense
    assert bands[0]["fill"] == none_line["stroke"]  # the band is its cell's colour
    assert chance.get("stroke-dasharray")
    texts = _texts(root / "cpu" / "curves.svg")
    assert "none (n=2)" in texts and "cutmix (n=1)" in texts
