"""Small inline SVG charts for the site's cell pages: accuracy per epoch, accuracy per class.

Why not matplotlib, which draws the board's figures (``uebench.plots``): a board has a page per
configuration (~200 on the cpu board) and matplotlib takes ~70 ms a figure here, so the two
charts of every page would turn a build of a few seconds into half a minute; and a chart that is
SVG elements in the page takes the page's fonts and colours, scales to a phone's width and
names each line in a ``<title>`` a pointer shows.  These are two fixed chart shapes, not a
plotting library: axes from 0 to 100%, one polyline per series, bars per class.
"""

from __future__ import annotations

from dataclasses import dataclass

# Okabe–Ito: distinguishable with every common colour-vision deficiency; a cell page has at most
# a handful of seeds, more get the palette again with a dashed line
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


@dataclass(frozen=True)
class Series:
    """One line: its name (legend and tooltip) and the (x, y %) points."""

    name: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Chart:
    """A drawn chart: the SVG markup (safe to embed: every text is escaped) and its legend."""

    svg: str
    legend: tuple[tuple[str, str, bool], ...]  # (name, colour, dashed)


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 34


def line_chart(series: list[Series], x_label: str, y_label: str, reference: tuple[float, str] | None = None,
               title: str = "") -> Chart:
    """Lines of accuracy (%) over ``x`` (epochs); ``reference``: a dashed horizontal line (e.g.
    chance) and its label."""
    xs = [x for s in series for x, _ in s.points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w

    def py(y: float) -> float:
        return TOP + (1 - y / 100) * plot_h

    parts = _frame(title, x_label, y_label, plot_w, plot_h)
    for tick in _ticks(x_lo, x_hi):
        parts.append(f'<text x="{px(tick):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" class="tick">{tick:g}</text>')
    if reference is not None:
        value, label = reference
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(value):.1f}" y2="{py(value):.1f}" class="reference"/>')
        parts.append(f'<text x="{W - RIGHT - 2}" y="{py(value) - 4:.1f}" text-anchor="end" class="tick">{_esc(label)}</text>')
    legend = []
    for i, s in enumerate(series):
        colour, dashed = PALETTE[i % len(PALETTE)], i >= len(PALETTE)
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"{dash} class="series">'
                     f"<title>{_esc(s.name)}</title></polyline>")
        legend.append((s.name, colour, dashed))
    return Chart(_svg(parts, title), tuple(legend))


def bar_chart(values: list[tuple[str, float | None]], y_label: str, highlight: frozenset[str] = frozenset(),
              title: str = "") -> Chart:
    """One bar per category (accuracy %, ``None``: no value); ``highlight``: categories drawn
    in the accent colour (a poisoned class)."""
    bottom = BOTTOM + 30  # room for the category names, turned so that long ones do not collide
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - bottom
    parts = _frame(title, "", y_label, plot_w, plot_h)
    step = plot_w / max(len(values), 1)
    for i, (name, value) in enumerate(values):
        x = LEFT + i * step
        cx, cy = x + step / 2, TOP + plot_h + 12
        parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" class="tick" '
                     f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{_esc(name)}</text>')
        if value is None:
            continue
        height = value / 100 * plot_h
        kind = "bar highlight" if name in highlight else "bar"
        parts.append(f'<rect x="{x + step * 0.15:.1f}" y="{TOP + plot_h - height:.1f}" width="{step * 0.7:.1f}" '
                     f'height="{height:.1f}" class="{kind}"><title>{_esc(name)}: {value:.1f}%</title></rect>')
        parts.append(f'<text x="{x + step / 2:.1f}" y="{TOP + plot_h - height - 3:.1f}" text-anchor="middle" '
                     f'class="tick">{value:.0f}</text>')
    return Chart(_svg(parts, title), ())


def _frame(title: str, x_label: str, y_label: str, plot_w: float, plot_h: float) -> list[str]:
    """Axes, horizontal grid lines every 20% and the axis labels."""
    parts = []
    for y in range(0, 101, 20):
        level = TOP + (1 - y / 100) * plot_h
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{level:.1f}" y2="{level:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{level + 4:.1f}" text-anchor="end" class="tick">{y}</text>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" class="axis"/>')
    parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" class="axis"/>')
    if x_label:
        parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{H - 4}" text-anchor="middle" class="label">{_esc(x_label)}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" class="label" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{_esc(y_label)}</text>')
    return parts


def _ticks(lo: float, hi: float) -> list[float]:
    """About six round ticks between ``lo`` and ``hi`` (epochs: whole numbers)."""
    span = hi - lo
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000) if span / s <= 6)
    first = -(-lo // step) * step
    return [first + i * step for i in range(int((hi - first) // step) + 1)]


def _svg(parts: list[str], title: str) -> str:
    label = f' aria-label="{_esc(title)}"' if title else ""
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" role="img"{label} xmlns="http://www.w3.org/2000/svg">'
            + "".join(parts) + "</svg>")
