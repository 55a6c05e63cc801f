"""Plots as inline SVG: no script library and no network, so the page is one file that opens
anywhere and logs nothing to the console. Shared by the audit and report stages, so it lives
below both (neither imports the other).

Every plot is a `<figure class="plot" data-plot=ID data-points=N>` whose drawn data carry
`class="data"`, so a browser test can check that each plot has data and that it rendered.
Callers thin long series first (the run report: `kxl.report.training.thin`): at most a few
thousand points each.

Plots are drawn in a W-wide viewBox and scale to the page's width (PLOT_CSS, which pages using
them include): text scales with them, so they stop shrinking at 0.8 W (ticks stay >= 8.8 px;
narrower, the figure scrolls sideways) and growing at 1.5 W.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

W, H = 760, 230
PLOT_CSS = (
    "figure.plot{margin:6px 0;overflow-x:auto}"
    f"figure.plot svg{{display:block;width:100%;height:auto;min-width:{W * 4 // 5}px;"
    f"max-width:{W * 3 // 2}px}}"
    "text.title{font-weight:600;font-size:13px}text.tick{font-size:11px;fill:#555}"
    "text.mark-label{font-size:10px}"
)
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 26, 34
PALETTE = ("#3366cc", "#dc6b2f", "#2a9d5c", "#9b59b6", "#c0392b", "#7f8c8d", "#d4a017",
           "#16a0a0", "#8e5a2b", "#e377c2", "#1f3d7a", "#9acd32", "#6b4c9a", "#ff9f80")


# A page's only script: counts each figure.plot's drawn data (non-empty bounding box) into
# data-drawn and its rendered width (CSS px) into data-width, and the page's plots into body
# data-plots / data-plots-drawn, for the browser test.
DRAWN_SCRIPT = """(function(){var f=document.querySelectorAll('figure.plot'),ok=0;
f.forEach(function(p){var n=0;p.querySelectorAll('.data').forEach(function(e){
var b=e.getBBox();if(b.width>0||b.height>0)n++;});p.dataset.drawn=n;if(n>0)ok++;
var s=p.querySelector('svg');if(s)p.dataset.width=Math.round(s.getBoundingClientRect().width);});
document.body.dataset.plots=f.length;document.body.dataset.plotsDrawn=ok;})();"""


@dataclass(frozen=True)
class Series:
    name: str
    x: np.ndarray
    y: np.ndarray
    color: str
    band: tuple[np.ndarray, np.ndarray] | None = None  # min/max envelope of thinned points
    width: float = 1.5


@dataclass(frozen=True)
class Mark:
    """A vertical mark on the x axis (a checkpoint, a resume)."""

    x: float
    label: str
    color: str
    title: str
    dash: bool = False


def fmt(v: float) -> str:
    """Short axis/label numbers: 20354 -> 20.4k, 0.00025 -> 2.5e-04."""
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 1e3:
        return f"{v:,.0f}"
    if a != 0 and a < 1e-2:
        return f"{v:.1e}"
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _span(values: list[np.ndarray], log: bool) -> tuple[float, float]:
    v = np.concatenate([a[np.isfinite(a)] for a in values]) if values else np.array([])
    if log:
        v = v[v > 0]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return (lo if (lo >= 0 and not log and lo - pad < 0) else lo - pad), hi + pad


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    ok = np.isfinite(xs) & np.isfinite(ys)
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs[ok], ys[ok], strict=True))


def _frame(plot_id: str, title: str, n: int, body: str, note: str = "", height: int = H,
           legend: str = "") -> str:
    extra = legend + (f"<figcaption>{escape(note)}</figcaption>" if note else "")
    return (f'<figure class="plot" id="plot-{plot_id}" data-plot="{plot_id}" '
            f'data-points="{n}"><svg viewBox="0 0 {W} {height}" width="100%" '
            f'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{escape(title)}">'
            f'<text class="title" x="{LEFT}" y="16">'
            f"{escape(title)}</text>{body}</svg>{extra}</figure>")


def _empty(plot_id: str, title: str, why: str) -> str:
    return (f'<figure class="plot empty" data-plot="{plot_id}" data-points="0">'
            f"<p>{escape(title)}: {escape(why)}</p></figure>")


def line_chart(plot_id: str, title: str, series: Sequence[Series], *, marks: Sequence[Mark] = (),
               log_y: bool = False, x_label: str = "step", note: str = "") -> str:
    """Lines over a shared x axis, optional min/max bands, vertical marks with labels."""
    series = [s for s in series if len(s.x)]
    n = sum(len(s.x) for s in series)
    if not n:
        return _empty(plot_id, title, "no data")
    xs = [s.x.astype(float) for s in series] + [np.array([m.x for m in marks], float)]
    x0, x1 = _span(xs, False)
    x0 = min(x0, 0.0) if x0 >= 0 else x0
    ys = [s.y.astype(float) for s in series] + [b for s in series if s.band for b in s.band]
    y0, y1 = _span(ys, log_y)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(v: np.ndarray) -> np.ndarray:
        return LEFT + (np.asarray(v, float) - x0) / (x1 - x0) * pw

    def sy(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, float)
        if log_y:
            v = np.log10(np.where(v > 0, v, np.nan))
        return TOP + ph - (v - y0) / (y1 - y0) * ph

    out = [_axes(x0, x1, y0, y1, log_y, x_label, sx, sy)]
    for s in series:
        if s.band is not None:
            top, bot = _points(sx(s.x), sy(s.band[1])), _points(sx(s.x[::-1]), sy(s.band[0][::-1]))
            out.append(f'<polygon class="band" points="{top} {bot}" fill="{s.color}" '
                       'fill-opacity="0.18" stroke="none"/>')
        out.append(f'<polyline class="data" data-series="{escape(s.name)}" data-n="{len(s.x)}" '
                   f'points="{_points(sx(s.x), sy(s.y))}" fill="none" stroke="{s.color}" '
                   f'stroke-width="{s.width}"><title>{escape(s.name)}</title></polyline>')
    out.append(_marks(marks, sx))
    out.append(_legend([(s.name, s.color) for s in series]))
    return _frame(plot_id, title, n, "".join(out), note)


Scale = Callable[[np.ndarray], np.ndarray]


def _axes(x0: float, x1: float, y0: float, y1: float, log_y: bool, x_label: str,
          sx: Scale, sy: Scale) -> str:
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
           'fill="none" stroke="#bbb"/>']
    for t in nice_ticks(x0, x1, 6):
        px = float(sx(np.array([t]))[0])
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{H - BOTTOM}" '
                   f'stroke="#eee"/><text class="tick" x="{px:.1f}" y="{H - BOTTOM + 13}" '
                   f'text-anchor="middle">{fmt(t)}</text>')
    yt = nice_ticks(y0, y1, 4)
    if log_y and math.floor(y1) - math.ceil(y0) >= 1:  # powers of ten, not 10**0.5 steps
        yt = list(range(math.ceil(y0), math.floor(y1) + 1))
    for t in yt:
        value = 10 ** t if log_y else t
        py = float(sy(np.array([value]))[0])
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" '
                   f'stroke="#eee"/><text class="tick" x="{LEFT - 4}" y="{py + 4:.1f}" '
                   f'text-anchor="end">{fmt(value)}</text>')
    out.append(f'<text class="tick" x="{W - RIGHT}" y="{H - 4}" text-anchor="end">'
               f"{escape(x_label)}</text>")
    return "".join(out)


def _marks(marks: Sequence[Mark], sx: Scale) -> str:
    out = []
    for i, m in enumerate(marks):
        px = float(sx(np.array([m.x]))[0])
        dash = ' stroke-dasharray="4 3"' if m.dash else ""
        ty = TOP + 10 + (i % 4) * 11  # stagger the labels of nearby marks
        # labels near the right edge run leftwards so they stay inside the plot
        tx, anchor = (px - 2, "end") if px > W - RIGHT - 7 * len(m.label) else (px + 2, "start")
        out.append(f'<g class="mark" data-x="{m.x:g}"><title>{escape(m.title)}</title>'
                   f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{H - BOTTOM}" '
                   f'stroke="{m.color}"{dash}/><text class="mark-label" x="{tx:.1f}" '
                   f'y="{ty}" text-anchor="{anchor}" fill="{m.color}">{escape(m.label)}</text>'
                   "</g>")
    return "".join(out)


def _legend(items: list[tuple[str, str]]) -> str:
    out, x = [], W - RIGHT
    for name, color in reversed(items):
        x -= 14 + 6.5 * len(name)
        out.append(f'<rect x="{x:.0f}" y="7" width="10" height="10" fill="{color}"/>'
                   f'<text class="tick" x="{x + 13:.0f}" y="16">{escape(name)}</text>')
    return "".join(out)


def bar_chart(plot_id: str, title: str, labels: Sequence[str], values: Sequence[float], *,
              titles: Sequence[str] | None = None, color: str = PALETTE[0],
              x_label: str = "", note: str = "") -> str:
    """Vertical bars, one per label, in the given order."""
    if not len(values):
        return _empty(plot_id, title, "no data")
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    top = max(float(max(values)), 1e-12)
    ticks = nice_ticks(0.0, top, 4)
    scale = ph / max(ticks[-1], top * 1.1)  # headroom for the count on the tallest bar
    slot = pw / len(values)
    out = [_bar_axes(ticks, scale)]
    every = max(1, math.ceil(len(values) * 7.0 * max(len(lb) for lb in labels) / pw))
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        bx, bh = LEFT + i * slot + slot * 0.1, v * scale
        tip = titles[i] if titles else f"{label}: {v:,}"
        out.append(f'<rect class="data" x="{bx:.1f}" y="{TOP + ph - bh:.1f}" '
                   f'width="{max(slot * 0.8, 1):.1f}" height="{bh:.1f}" fill="{color}">'
                   f"<title>{escape(tip)}</title></rect>")
        if len(values) <= 24:  # few bars: the count on top, so tiny ones still show
            out.append(f'<text class="tick" x="{LEFT + (i + 0.5) * slot:.1f}" '
                       f'y="{TOP + ph - bh - 3:.1f}" text-anchor="middle">{fmt(v)}</text>')
        if i % every == 0:
            out.append(f'<text class="tick" x="{LEFT + (i + 0.5) * slot:.1f}" '
                       f'y="{H - BOTTOM + 13}" text-anchor="middle">{escape(label)}</text>')
    if x_label:
        out.append(f'<text class="tick" x="{W - RIGHT}" y="{H - 4}" text-anchor="end">'
                   f"{escape(x_label)}</text>")
    return _frame(plot_id, title, len(values), "".join(out), note)


def _bar_axes(ticks: list[float], scale: float) -> str:
    out = []
    base = H - BOTTOM
    for t in ticks:
        py = base - t * scale
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" '
                   f'stroke="#eee"/><text class="tick" x="{LEFT - 4}" y="{py + 4:.1f}" '
                   f'text-anchor="end">{fmt(t)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{base}" y2="{base}" stroke="#999"/>')
    return "".join(out)


def stacked_bars(plot_id: str, title: str, rows: Sequence[tuple[str, Sequence[tuple[str, int]]]],
                 colors: dict[str, str], *, note: str = "") -> str:
    """Horizontal bars, one per row, each split into named parts and drawn as 100% of its own
    total (so a row of small drop counts stays readable beside the row of all posts)."""
    rows = [(label, [(k, v) for k, v in parts if v > 0]) for label, parts in rows]
    rows = [(label, parts) for label, parts in rows if parts]
    if not rows:
        return _empty(plot_id, title, "nothing to show")
    left, right, bar_h = 150, 90, 24
    pw = W - left - right
    out, n = [], 0
    for r, (label, parts) in enumerate(rows):
        y, x = TOP + 4 + r * (bar_h + 8), float(left)
        total = sum(v for _, v in parts)
        out.append(f'<text class="tick" x="{left - 6}" y="{y + bar_h / 2 + 4}" '
                   f'text-anchor="end">{escape(label)}</text><text class="tick" '
                   f'x="{W - right + 6}" y="{y + bar_h / 2 + 4}">{total:,}</text>')
        for name, v in parts:
            w = v / total * pw
            out.append(f'<rect class="data" data-part="{escape(name)}" x="{x:.1f}" y="{y}" '
                       f'width="{max(w, 1):.1f}" height="{bar_h}" fill="{colors[name]}">'
                       f"<title>{escape(name)}: {v:,} ({100 * v / total:.1f}%)</title></rect>")
            text = f"{name} {v:,}"
            if w > 6.5 * len(text) + 8:
                out.append(f'<text class="inbar" x="{x + 4:.1f}" y="{y + bar_h / 2 + 4}">'
                           f"{escape(text)}</text>")
            x += w
            n += 1
    used = dict.fromkeys(k for _, parts in rows for k, _ in parts)
    legend = "".join(f'<span><i style="background:{colors[k]}"></i>{escape(k)}</span>'
                     for k in used)
    height = TOP + 4 + len(rows) * (bar_h + 8) + 4
    return _frame(plot_id, title, n, "".join(out), note, height,
                  f'<div class="legend">{legend}</div>')
