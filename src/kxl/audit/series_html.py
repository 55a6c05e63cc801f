"""Self-contained HTML for a series report: per block, line charts over the checkpoint steps of
the norm, the change from the previous checkpoint (flagged jumps marked) and, with two series,
their cosine and relative L2. Inline SVG (kxl.svg) and one counting script; no network."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from kxl.audit.report import divergence_html
from kxl.svg import DRAWN_SCRIPT, PALETTE, PLOT_CSS, Mark, Series, fmt, line_chart

CSS = ("body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;"
       "padding:0 16px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}"
       "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;"
       "padding:2px 8px;text-align:left}.flag{color:#c0392b}" + PLOT_CSS)
FLAG_COLOR = "#c0392b"


def _line(rows: list[dict[str, Any]], key: str, name: str, color: str) -> Series:
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)]
    x = np.array([p[0] for p in pts], float)
    return Series(name, x, np.array([p[1] for p in pts], float), color)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label)


def block_charts(report: dict[str, Any], label: str) -> str:
    rows = [r for r in report["rows"] if r["block"] == label]
    sides = sorted(report["sides"])
    names = {s: f"{s} ({report['kinds'][s]})" for s in sides}
    color = {"a": PALETTE[0], "b": PALETTE[1]}
    marks = [Mark(f["step"], f"jump {f['series']}", FLAG_COLOR,
                  f"{names[f['series']]}: change {fmt(f['change'])} = {fmt(f['ratio'])} x the "
                  f"median {fmt(f['median'])} of the earlier changes", dash=True)
             for f in report["flags"] if f["block"] == label]
    slug = _slug(label)
    out = [line_chart(f"{slug}-norm", f"{label}: ||delta||",
                      [_line(rows, f"norm_{s}", names[s], color[s]) for s in sides]),
           line_chart(f"{slug}-change", f"{label}: change from the previous checkpoint",
                      [_line(rows, f"change_{s}", names[s], color[s]) for s in sides],
                      marks=marks)]
    if len(sides) == 2:
        out.append(line_chart(f"{slug}-between", f"{label}: a vs b at the same step",
                              [_line(rows, "cosine", "cosine", PALETTE[2]),
                               _line(rows, "rel_l2", "relative L2 (of a)", PALETTE[3])]))
    return f"<h2 id='{slug}'>{escape(label)} ({rows[0]['modules']} modules)</h2>" + "".join(out)


def _flags(report: dict[str, Any]) -> str:
    if not report["flags"]:
        return f"<p>No jumps: no change above {report['jump']:g} x its block's running median.</p>"
    body = "".join(f"<tr class=flag><td>{f['step']}</td><td>{f['series']}</td>"
                   f"<td>{escape(f['block'])}</td><td>{fmt(f['change'])}</td>"
                   f"<td>{fmt(f['median'])}</td><td>{fmt(f['ratio'])}</td></tr>"
                   for f in report["flags"])
    return ("<table><tr><th>step</th><th>series</th><th>block</th><th>change</th>"
            f"<th>median before</th><th>ratio</th></tr>{body}</table>")


def render_series_html(report: dict[str, Any]) -> str:
    sides = "".join(
        f"<tr><td>{s} ({escape(report['kinds'][s])})</td><td>"
        + "<br>".join(f"{p['step']}: {escape(str(p['operand']))}" for p in report["sides"][s])
        + "</td></tr>" for s in sorted(report["sides"]))
    nav = " ".join(f"<a href='#{_slug(b)}'>{escape(b)}</a>" for b in report["blocks"])
    title = f"kxl series: {report['name']}"
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p>steps {report['steps']}; {report['modules']} modules; "
            "change = ||D_t - D_{t-1}|| / ||D_{t-1}||, rel L2 = ||Da - Db|| / ||Da||</p>"
            f"<table>{sides}</table><h2>Jumps</h2>{_flags(report)}"
            + (divergence_html(report["divergence"]) if "divergence" in report else "")
            + f"<p>{nav}</p>"
            + "".join(block_charts(report, b) for b in report["blocks"])
            + f"<script>{DRAWN_SCRIPT}</script></body></html>\n")
