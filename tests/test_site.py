"""``uebench leaderboard site`` without a browser: the pages hold the markdown board's numbers,
a page per configuration, the files they link; the output folder is replaced only when it is an
earlier site, and only once the new one is complete.  (The browser walks the committed site in
``test_site_browser.py``.)"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import pandas as pd
import pytest
from test_leaderboard import _row, _sections

from conftest import REPO, assert_clean_error
from uebench.leaderboard import build
from uebench.results import append_row
from uebench.site import MARKER, SiteError, build_site

# (attack, form, defense, seed, accuracy): two configurations with three and two seeds, and more
CELLS = [
    ("none", None, "none", 0, 0.90), ("none", None, "none", 1, 0.92), ("none", None, "cutmix", 0, 0.89),
    ("errmin-pgd", "sample", "none", 0, 0.20), ("errmin-pgd", "sample", "none", 1, 0.22),
    ("errmin-pgd", "sample", "none", 2, 0.24),
    ("errmin-pgd", "class", "cutmix", 0, 0.15), ("random", None, "none", 0, 0.85),
]


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "leaderboards"
    for i, (attack, form, defense, seed, acc) in enumerate(CELLS):
        append_row(folder / "cpu" / "results.csv", _row(i, attack=attack, form=form, defense=defense, victim="cnn-small",
                                                        seed=seed, acc=acc))
    curves = folder / "cpu" / "curves"
    curves.mkdir()
    for i in range(len(CELLS)):  # a per-epoch curve with per-class accuracy for every run
        rows = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "test_acc": CELLS[i][4] * e / 2, "lr": 0.1, "seconds": 1.0,
                 **{f"test_acc_c{k}": k / 10 for k in range(10)}} for e in (1, 2)]
        pd.DataFrame(rows).to_csv(curves / f"run-{i}.csv", index=False)
    return folder


class _Tables(HTMLParser):
    """Every ``table.board`` as (section, [(attack label, {defense: cell text})])."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._col, self._row = [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "board" in (attrs.get("class") or ""):
            self.tables.append((attrs["data-section"], []))
        elif tag == "tr" and "data-attack" in attrs and self.tables:
            self._row = (attrs["data-attack"], {})
            self.tables[-1][1].append(self._row)
        elif tag == "td" and self._row is not None and attrs.get("data-col") and not attrs["data-col"].startswith("imp-"):
            self._col, self._cell = attrs["data-col"], ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row[1][self._col] = " ".join(self._cell.split())
            self._cell = None


def _board(site) -> _Tables:
    tables = _Tables()
    tables.feed((site / "cpu-cifar10-cnn-small.html").read_text())
    return tables


def test_the_board_page_shows_the_markdown_boards_numbers(root, tmp_path):
    site = tmp_path / "site"
    build_site(root, site)
    build(root)
    text = (root / "cpu.md").read_text()
    title = "cifar10 · victim `cnn-small` · poison rate 1"
    markdown, oracle = _sections(text)[title], _sections(text, oracle=True)[title]
    defenses = [d.strip() for d in markdown[0].strip("|").split("|")][1:]

    def cells(lines):
        for line in lines[2:]:
            label, *texts = [c.strip() for c in line.strip("|").split("|")]
            for defense, cell in zip(defenses, texts, strict=True):
                yield (label, defense), re.fullmatch(r"([\d.]+)(?: ± ([\d.]+))? \(n=(\d+)[;)].*", cell)

    oracles = dict(cells(oracle))
    expected = {}
    for key, found in cells(markdown):  # the cell as the page shows it: mean ± sd, n, and the oracle table's mean
        expected[key] = "—" if not found else " ".join(
            [found[1] + (f" ± {found[2]}" if found[2] else ""), f"n={found[3]}", f"oracle {oracles[key][1]}"])
    (section, rows), = _board(site).tables
    assert section == "poison-rate-1"
    shown = {(label, defense): text for label, cells in rows for defense, text in cells.items()}
    assert shown == expected
    assert shown[("errmin-pgd form=sample", "none")] == "22.00 ± 2.00 n=3 oracle 22.00"


def test_a_page_per_configuration_with_its_seeds_curves_and_commands(root, tmp_path):
    site = tmp_path / "site"
    build_site(root, site)
    frame = pd.read_csv(root / "cpu" / "results.csv")
    pages = sorted(site.glob("cells/*.html"))
    assert len(pages) == frame["config_key"].nunique() == 5
    page = next(p.read_text() for p in pages if "errmin-pgd form=sample</code> × <code>none" in p.read_text())
    assert page.count('class="series"') == 3  # a curve per seed
    assert page.count('class="bar"') == 10  # accuracy per class
    commands = re.findall(r"<pre><code>(uebench run [^<]*)</code></pre>", page)
    assert [c.split("--seed ")[1] for c in commands] == ["0", "1", "2"]
    assert all("--attack errmin-pgd" in c and "--defense none" in c for c in commands)
    assert "22.00 ± 2.00%" in page and "95% CI 17.0–27.0" in page


def test_every_table_cell_links_its_configurations_page(root, tmp_path):
    site = tmp_path / "site"
    build_site(root, site)
    text = (site / "cpu-cifar10-cnn-small.html").read_text()
    links = re.findall(r'href="(cells/[^"]+)"', text)
    assert len(links) == 5 and all((site / link).is_file() for link in links)


def test_the_build_replaces_an_earlier_site_and_no_other_folder(root, tmp_path, invoke):
    site = tmp_path / "site"
    build_site(root, site)
    assert (site / MARKER).is_file()
    (site / "stale.html").write_text("from an earlier build")
    build_site(root, site)
    assert not (site / "stale.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboards", "site"]  # no staging folder left

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(SiteError, match="holds other files"):
        build_site(root, mine)
    assert (mine / "thesis.tex").read_text() == "mine"
    output = assert_clean_error(invoke("leaderboard", "site", "--root", root, "--out", mine), code=2)
    assert "notes" in output and "--out" in output


def test_a_failed_build_leaves_the_earlier_site_as_it_was(root, tmp_path, monkeypatch):
    site = tmp_path / "site"
    build_site(root, site)
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    from uebench.site import pages

    def broken(self, *args, **kwargs):
        raise RuntimeError("a template error")

    monkeypatch.setattr(pages.SiteWriter, "cell_charts", broken)
    with pytest.raises(RuntimeError):
        build_site(root, site)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leaderboards", "site"]


def test_the_gallery_pages_show_the_committed_pictures(root, tmp_path):
    gallery = root / "gallery" / "cpu" / "cifar10"
    shutil.copytree(REPO / "leaderboards" / "gallery" / "cpu" / "cifar10", gallery)
    site = tmp_path / "site"
    build_site(root, site)
    data = json.loads((gallery / "gallery.json").read_text())
    shown = [label for label, e in data["attacks"].items() if e["status"] == "shown"]
    assert len(list(site.glob("gallery/cpu-cifar10-*.html"))) == len(shown)
    page = (site / "gallery" / "cpu-cifar10-errmin-pgd-form-class.html").read_text()
    assert page.count("<img") == 30
    for src in re.findall(r'src="\.\./([^"]+\.png)"', page):
        assert (site / src).is_file(), src
    # the board's attack column links the gallery page of an attack it pictures
    board = (site / "cpu-cifar10-cnn-small.html").read_text()
    assert 'href="gallery/cpu-cifar10-errmin-pgd-form-sample.html"' in board

    (gallery / "errmin-pgd-form-class" / "delta-3.png").unlink()
    with pytest.raises(SiteError, match="not there"):
        build_site(root, tmp_path / "site2")


def test_a_root_without_results_is_a_clear_error(tmp_path, invoke):
    (tmp_path / "empty").mkdir()
    output = assert_clean_error(invoke("leaderboard", "site", "--root", tmp_path / "empty", "--out", tmp_path / "s"), code=2)
    assert "results.csv" in output
