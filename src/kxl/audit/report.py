"""Self-contained HTML for a diff report: summary, per-block table, inline-SVG heatmap of the
relative L2 difference per (block, index), and the failing tensors. No external assets."""

from __future__ import annotations

import html
import math
from typing import Any

from kxl.audit.blocks import BLOCKS

CELL, LABEL_W, MAX_LISTED = 18, 90, 500


def _colour(rel: float, failing: int) -> str:
    """White (equal) -> yellow -> red as log10(rel) goes -12 -> 0; purple for inf."""
    if rel == 0 and not failing:
        return "#f4f9f4"
    if math.isinf(rel):
        return "#7b2d8e"
    x = min(1.0, max(0.0, (math.log10(max(rel, 1e-12)) + 12) / 12))
    return f"rgb(255,{int(235 * (1 - x))},{int(120 * (1 - x))})"


def heatmap_svg(cells: list[dict[str, Any]]) -> str:
    rows = [b for b in BLOCKS if any(c["block"] == b for c in cells)]
    width = max([0] + [(c["index"] if c["index"] is not None else -1) + 2 for c in cells])
    h = len(rows) * CELL + 20
    w = LABEL_W + width * CELL + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="monospace" font-size="11">']
    for y, block in enumerate(rows):
        out.append(f'<text x="0" y="{y * CELL + 13}">{block}</text>')
        for c in (c for c in cells if c["block"] == block):
            col = (c["index"] if c["index"] is not None else -1) + 1
            tip = html.escape(f"{block}[{'-' if c['index'] is None else c['index']}]: "
                              f"rel_l2={c['rel_l2']:.3g}, {c['failing']}/{c['tensors']} failing")
            out.append(f'<rect x="{LABEL_W + col * CELL}" y="{y * CELL}" width="{CELL - 2}" '
                       f'height="{CELL - 2}" fill="{_colour(c["rel_l2"], c["failing"])}" '
                       f'stroke="{"#c00" if c["failing"] else "#ccc"}"><title>{tip}</title></rect>')
    out.append(f'<text x="{LABEL_W}" y="{h - 4}">column: block index (first column: no index); '
               "colour: log10 relative L2, white = equal</text></svg>")
    return "".join(out)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def divergence_html(div: dict[str, Any] | None) -> str:
    """The first divergent step between two runs and what it trained on in each
    (kxl.audit.crash.divergence): a heading, a line and one row table per run."""
    if div is None:
        return "<h2>Divergence</h2><p>No step differs: the two runs' files are identical.</p>"
    start, stop = div["window"]
    if div["step"] is None:
        return (f"<h2>Divergence</h2><p>Checkpoints {start} (equal) and {stop} (different): no "
                "step between them differs in data or learning rate.</p>")
    parts = [f"<h2>Divergence: step {div['step']}</h2><p>Checkpoint {start} is equal in both "
             f"runs, {stop} differs; the first step in between whose inputs differ is "
             f"<b>{div['step']}</b> (data first differs at {div['data_step']}, learning rate at "
             f"{div['lr_step']}).</p>"]
    for side in ("a", "b"):
        lr = div["lr"].get(side)
        parts.append(f"<h3>{side}: step {div['step']}"
                     + (f", lr unet {_fmt(lr['lr_unet'])}, text encoders "
                        f"{_fmt(lr['lr_text_encoder'])}" if lr else "") + "</h3>")
        parts.append(_table(div["rows"].get(side, []), ["step", "rank", "micro", "slot",
                                                        "post_id", "bucket", "sample_seed"]))
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    verdict = "PASS" if report["passed"] else "FAIL"
    failing = [r for r in report["tensors"] if r["status"] != "equal"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kxl diff</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>",
        f"<h1>kxl diff: {verdict}</h1>",
        f"<p>mode <b>{html.escape(report['mode'])}</b><br>A: {html.escape(report['a'])}<br>"
        f"B: {html.escape(report['b'])}<br>base: {html.escape(str(report.get('base')))}<br>"
        f"tolerance: {html.escape(str(report['tolerance']))}</p>",
        "<h2>Counts</h2>", _table([report["counts"]], list(report["counts"])),
        "<h2>Per block</h2>",
        _table(report["blocks"], ["block", "tensors", "failing", "max_abs", "rel_l2",
                                  "min_cosine"]),
        "<h2>Heatmap</h2>", heatmap_svg(report["cells"]),
    ]
    if "run" in report:
        run = report["run"]
        parts.append(f"<h2>Runs</h2><p>common checkpoint steps {run['common']}; last equal "
                     f"{run['last_equal']}; first differing {run['first_diff']}</p>")
        if run.get("data"):
            d = run["data"]
            parts.append(f"<p>plan steps {d['steps'][0]}..{d['steps'][1] - 1}: {d['samples']} "
                         f"samples, {d['unique_posts']} unique posts</p>")
            parts.append(_table(d["per_step"], ["step", "samples", "unique_posts", "buckets"]))
        if "divergence" in run:
            parts.append(divergence_html(run["divergence"]))
    parts.append(f"<h2>Tensors not equal ({len(failing)}, first {MAX_LISTED} listed)</h2>")
    parts.append(_table(failing[:MAX_LISTED], ["key", "status", "shape_a", "shape_b", "dtype_a",
                                               "dtype_b", "max_abs", "rel_l2", "cosine"]))
    parts.append("</body></html>\n")
    return "".join(parts)


def json_safe(obj: Any) -> Any:
    """Non-finite floats as strings ("inf"), so the JSON is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj
