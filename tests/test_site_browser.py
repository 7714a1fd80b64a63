"""The website, used as a person uses it: in headless Chromium (Debian's ``chromium``, driven by
Playwright; no browser is downloaded), over ``file://`` as a reader who opens ``index.html``.

The site is built from the committed leaderboards.  The tests sort a column and check the
order, filter attacks and defenses, toggle columns, open a cell page and a gallery page, and
walk every page, failing on any console error, page error, image that does not load or link
that leads nowhere.

Without Chromium (or the playwright package) the tests are skipped and say why; ``.ci/run``
installs both and sets ``UEBENCH_REQUIRE_BROWSER=1``, under which a missing browser fails
instead: CI never skips them.
"""

from __future__ import annotations

import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import REPO

CHROMIUM = os.environ.get("UEBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# what the machine probe found to start Chromium quietly on a closed network, as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM:
        return "no Chromium on this machine (Debian: apt-get install chromium; or set UEBENCH_CHROMIUM to its path)"
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from uebench.site import build_site

    out = tmp_path_factory.mktemp("site") / "site"
    build_site(REPO / "leaderboards", out)
    return out


@pytest.fixture(scope="module")
def browser():
    why = _missing()
    if why:
        if os.environ.get("UEBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"UEBENCH_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Page:
    """A browser tab that records every console error and uncaught page error."""

    def __init__(self, browser, width=1280, height=900):
        self.errors: list[str] = []
        self.tab = browser.new_page(viewport={"width": width, "height": height})
        self.tab.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self, path: Path):
        self.tab.goto(path.as_uri())
        self.tab.wait_for_load_state("load")
        return self.tab

    def broken_images(self) -> list[str]:
        return self.tab.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")


@pytest.fixture
def page(browser):
    tab = Page(browser)
    yield tab
    tab.tab.close()
    assert not tab.errors, "\n".join(tab.errors)


def _main_board(site: Path) -> Path:
    boards = sorted(p for p in site.glob("cpu-*.html"))
    assert boards, f"no cpu board page in {sorted(p.name for p in site.iterdir())}"
    return boards[0]


def _column_values(tab, table: str, column: int) -> list[str]:
    return tab.eval_on_selector_all(f"{table} tbody tr:not(.filtered-out)",
                                    f"rows => rows.map(r => r.children[{column}].getAttribute('data-sort'))")


def test_sorting_a_defense_column_orders_the_rows(site, page):
    tab = page.open(_main_board(site))
    table = "table.board[data-section='poison-rate-1']"
    headers = tab.eval_on_selector_all(f"{table} thead th", "hs => hs.map(h => h.getAttribute('data-col'))")
    column = headers.index("none")
    tab.click(f"{table} thead th[data-col='none'] button")
    values = _column_values(tab, table, column)
    numbers = [float(v) for v in values if v]
    assert len(numbers) >= 10, values
    assert numbers == sorted(numbers), numbers
    assert values[-1] == "" or all(v for v in values), "cells without a value sort last"
    assert tab.get_attribute(f"{table} thead th[data-col='none']", "aria-sort") == "ascending"
    tab.click(f"{table} thead th[data-col='none'] button")
    numbers = [float(v) for v in _column_values(tab, table, column) if v]
    assert numbers == sorted(numbers, reverse=True), numbers
    tab.click(f"{table} thead th[data-col='attack'] button")  # text column: alphabetical
    labels = [v.lower() for v in _column_values(tab, table, 0)]
    assert labels == sorted(labels), labels


def test_filters_hide_attacks_and_defenses_by_name(site, page):
    tab = page.open(_main_board(site))
    table = "table.board[data-section='poison-rate-1']"
    tab.fill("#filter-attacks", "errmin")
    shown = tab.eval_on_selector_all(f"{table} tbody tr:not(.filtered-out)", "rows => rows.map(r => r.dataset.attack)")
    hidden = tab.eval_on_selector_all(f"{table} tbody tr.filtered-out", "rows => rows.map(r => r.dataset.attack)")
    assert shown and all("errmin" in s for s in shown), shown
    assert hidden and not any("errmin" in h for h in hidden), hidden
    tab.fill("#filter-defenses", "cut")
    visible = tab.eval_on_selector_all(f"{table} thead th.defense", "hs => hs.filter(h => getComputedStyle(h).display !== 'none')"
                                                                    ".map(h => h.dataset.col)")
    assert visible and all("cut" in d for d in visible), visible
    cells = tab.eval_on_selector_all(f"{table} tbody td[data-col='none']",
                                     "cs => cs.filter(c => getComputedStyle(c).display !== 'none').length")
    assert cells == 0, "the none column's cells must hide with its header"
    tab.fill("#filter-attacks", "")
    assert not tab.query_selector_all(f"{table} tbody tr.filtered-out")


def test_toggles_show_the_oracle_and_imperceptibility_columns(site, page):
    tab = page.open(_main_board(site))
    table = "table.board[data-section='poison-rate-1']"

    def shown(selector):
        return tab.eval_on_selector_all(selector, "xs => xs.filter(x => getComputedStyle(x).display !== 'none').length")

    assert shown(f"{table} th.imp") == 0 and shown(f"{table} .oracle") == 0
    tab.check("#toggle-imperceptibility")
    assert shown(f"{table} th.imp") == 5
    psnr = tab.eval_on_selector_all(f"{table} td[data-col='imp-psnr_mean']", "cs => cs.map(c => c.textContent.trim())")
    assert any(p.replace(".", "", 1).isdigit() for p in psnr), psnr
    tab.check("#toggle-oracle")
    assert shown(f"{table} .oracle") > 10


def test_a_cell_page_holds_its_runs_curves_and_command(site, page):
    tab = page.open(_main_board(site))
    table = "table.board[data-section='poison-rate-1']"
    row = tab.query_selector(f"{table} tbody tr[data-attack='errmin-pgd form=class']")
    assert row is not None
    row.query_selector("td[data-col='none'] a").click()
    tab.wait_for_load_state("load")
    assert "/cells/" in tab.url
    assert "errmin-pgd form=class" in tab.inner_text("h1")
    seeds = tab.eval_on_selector_all("table.runs tbody tr", "rs => rs.length")
    assert seeds >= 3
    assert tab.eval_on_selector_all("svg.chart polyline.series", "ps => ps.length") == seeds  # one curve per seed
    assert tab.eval_on_selector_all("svg.chart rect.bar", "bs => bs.length") == 10  # CIFAR-10's classes
    commands = tab.eval_on_selector_all(".command code", "cs => cs.map(c => c.textContent)")
    assert len(commands) == seeds and all(c.startswith("uebench run ") and "form=class" in c for c in commands), commands
    tab.click("a[href*='.html#poison-rate-1']")  # back to the board, at the cell's section
    tab.wait_for_load_state("load")
    assert tab.url.endswith("#poison-rate-1")


def test_the_gallery_shows_clean_poisoned_and_noise(site, page):
    tab = page.open(site / "gallery" / "index.html")
    links = tab.eval_on_selector_all("a.attack-page", "as => as.map(a => a.getAttribute('href'))")
    assert links, "the gallery index links no attack page"
    tab.click("a.attack-page")
    tab.wait_for_load_state("load")
    heads = tab.eval_on_selector_all(".gallery-grid .head", "hs => hs.map(h => h.textContent.trim())")
    assert {"clean", "poisoned", "noise δ (amplified)"} <= set(heads), heads
    assert tab.eval_on_selector_all(".gallery-grid img", "is => is.length") == 30
    assert not page.broken_images()


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name):
                self.targets.append((tag, attrs[name]))


def test_every_page_loads_without_errors_and_every_link_and_image_resolves(site, browser):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 50
    parsed = {}
    for path in pages:
        links = _Links()
        links.feed(path.read_text())
        parsed[path.resolve()] = links
    broken = []
    for path, links in parsed.items():
        for tag, target in links.targets:
            parts = urlsplit(target)
            if parts.scheme in ("http", "https", "mailto"):
                if tag != "a":  # a paper's page may be linked; a script, style or image must not come from the network
                    where = path.relative_to(site.resolve())
                    broken.append(f"{where}: <{tag}> {target} (the site must not load from the network)")
                continue
            resolved = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not resolved.is_file():
                broken.append(f"{path.relative_to(site.resolve())}: {target} (no such file)")
            elif parts.fragment and resolved.suffix == ".html" and parts.fragment not in parsed[resolved].ids:
                broken.append(f"{path.relative_to(site.resolve())}: {target} (no element with that id)")
    assert not broken, "\n".join(broken)
    tab = Page(browser)
    try:
        bad = []
        for path in pages:
            tab.open(path)
            bad += [f"{path.name}: {src}" for src in tab.broken_images()]
        assert not bad, "images that do not load:\n" + "\n".join(bad)
        assert not tab.errors, "\n".join(tab.errors)
    finally:
        tab.tab.close()


def test_the_pages_read_on_a_phone(site, browser):
    """At a phone's width no page scrolls sideways: wide tables scroll inside their own box."""
    tab = Page(browser, width=390, height=844)
    try:
        pages = [site / "index.html", _main_board(site), next(site.glob("cells/*.html")), site / "reported.html",
                 site / "gallery" / "index.html", next(site.glob("gallery/cpu-*.html"))]
        wide = []
        for path in pages:
            view = tab.open(path)
            width = view.evaluate("document.documentElement.scrollWidth")
            if width > 390 + 1:
                wide.append(f"{path.relative_to(site)}: {width} px")
        assert not wide, "pages wider than the phone:\n" + "\n".join(wide)
        assert not tab.errors, "\n".join(tab.errors)
    finally:
        tab.tab.close()
