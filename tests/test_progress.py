"""Progress bars: plain lines without a terminal; inner (transient) bars vanish when done."""

from __future__ import annotations

import io

from rich.console import Console

from uebench.progress import Reporter


def test_without_a_terminal_bars_print_lines_and_transient_bars_nothing():
    out = io.StringIO()
    with Reporter(console=Console(file=out, force_terminal=False, width=200)) as reporter:
        outer = reporter.task("crafting Δs", total=2)
        inner = reporter.task("perturbation pass", total=3, transient=True)
        inner.update(1)
        inner.close()
        outer.update(1, error=0.5)
        outer.close()
    text = out.getvalue()
    assert "crafting Δs 1/2  error=0.5" in text
    assert "perturbation pass" not in text


def test_on_a_terminal_a_transient_bar_is_removed_when_closed():
    with Reporter(console=Console(file=io.StringIO(), force_terminal=True, width=120)) as reporter:
        outer = reporter.task("crafting Δc", total=5)
        inner = reporter.task("perturbation pass", total=3, transient=True)
        inner.update(3)
        inner.close()
        outer.close()
        descriptions = [t.description for t in reporter._progress.tasks]
    assert descriptions == ["crafting Δc"]  # the stopped outer bar stays, the pass bar is gone
