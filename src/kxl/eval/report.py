"""The self-contained CCIP report: one HTML file, no external URLs, images inline as base64.

Sections: a plain-words note when the CCIP model is a stand-in, the headline mean score per
model (and the gap between the first two), a verdict for every pair of models
(kxl.eval.pairs), the per-character score distribution per model (inline SVG histogram), the
per-character table (sortable by clicking a header; sorted by gap on load), the best and worst
characters with reference vs generated image grids, and the provenance of every model compared
and of the CCIP model.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from kxl.eval.pairs import ALPHA

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
THUMB = 96


@dataclass(frozen=True)
class ReportInputs:
    scores: pl.DataFrame          # kxl.eval.score.SCORES_SCHEMA
    characters: pl.DataFrame      # kxl.eval.characters.CHARACTERS_SCHEMA
    refs: pl.DataFrame            # REFS_SCHEMA (file relative to images_root)
    images_root: Path
    generated: dict[str, tuple[pl.DataFrame, Path]]  # model -> (images table, its dir)
    models: list[dict[str, Any]]  # per model: meta.json of its generation (provenance)
    ccip: dict[str, Any]          # repo_id, revision, commit, model, threshold, stand_in
    examples: int = 3
    conditioning: list[dict[str, Any]] = field(default_factory=list)  # probe JSON per model
    pairs: list[dict[str, Any]] = field(default_factory=list)  # summary.json's, kxl.eval.pairs


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def thumb(path: Path) -> str:
    """A PNG data URI of the image scaled to fit THUMB x THUMB."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((THUMB, THUMB), Image.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def wide_scores(inp: ReportInputs, names: list[str]) -> pl.DataFrame:
    """One row per character: score and difference per model, gap = names[1] - names[0]."""
    wide = inp.characters.select("rank", "character", "series", "gender", "n_refs")
    for name in names:
        part = inp.scores.filter(pl.col("model") == name).select(
            "rank", pl.col("score").alias(f"score:{name}"),
            pl.col("mean_difference").alias(f"diff:{name}"))
        wide = wide.join(part, on="rank", how="left")
    if len(names) >= 2:
        wide = wide.with_columns((pl.col(f"score:{names[1]}") - pl.col(f"score:{names[0]}"))
                                 .alias("gap"))
    return wide.sort("rank")


def histogram_svg(inp: ReportInputs, names: list[str], bins: int = 10) -> str:
    """Grouped bars: share of characters per score bin, one colour per model."""
    w, h, pad = 520, 220, 34
    bw = (w - 2 * pad) / bins
    # scales to the page as kxl.svg's plots do (kxl.svg.PLOT_CSS), within 0.8-1.5 x its width
    parts = [f'<svg role="img" width="100%" viewBox="0 0 {w} {h}" '
             'preserveAspectRatio="xMinYMin meet" style="display:block;height:auto;'
             f'min-width:{w * 4 // 5}px;max-width:{w * 3 // 2}px" '
             'aria-label="score distribution per model">']
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>')
    for k, name in enumerate(names):
        s = inp.scores.filter(pl.col("model") == name)["score"].to_numpy()
        counts = [int(((s >= i / bins) & ((s < (i + 1) / bins) | (i == bins - 1))).sum())
                  for i in range(bins)]
        for i, c in enumerate(counts):
            frac = c / max(len(s), 1)
            bh = frac * (h - 2 * pad)
            x = pad + i * bw + k * bw / len(names)
            parts.append(f'<rect x="{x:.1f}" y="{h - pad - bh:.1f}" width="{bw / len(names):.1f}"'
                         f' height="{bh:.1f}" fill="{COLOURS[k % len(COLOURS)]}">'
                         f"<title>{esc(name)}: {c} characters in "
                         f"[{i / bins:.1f}, {(i + 1) / bins:.1f})</title></rect>")
        parts.append(f'<text x="{w - pad - 120}" y="{16 + 14 * k}" font-size="12" '
                     f'fill="{COLOURS[k % len(COLOURS)]}">&#9632; {esc(name)}</text>')
    for i in range(0, bins + 1, 2):
        parts.append(f'<text x="{pad + i * bw:.1f}" y="{h - pad + 14}" font-size="11" '
                     f'text-anchor="middle">{i / bins:.1f}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 4}" font-size="12" text-anchor="middle">'
                 "CCIP score per character</text></svg>")
    return "".join(parts)


def headline(inp: ReportInputs, names: list[str]) -> str:
    rows = []
    means, diffs = {}, {}
    for name in names:
        s = inp.scores.filter(pl.col("model") == name)
        means[name] = float(s["score"].mean() or 0.0)
        diffs[name] = float(s["mean_difference"].mean() or 0.0)
        rows.append(f"<tr><td>{esc(name)}</td><td class=num>{means[name]:.4f}</td>"
                    f"<td class=num>{diffs[name]:.4f}</td><td class=num>{s.height}</td></tr>")
    gap = ""
    if len(names) >= 2:
        d = means[names[1]] - means[names[0]]
        verdict = "beats" if d > 0 else ("ties" if d == 0 else "trails")
        # the difference is shown too: it still ranks models when both score 0 at a threshold
        gap = (f'<p class=verdict id=verdict><b>{esc(names[1])}</b> {verdict} <b>{esc(names[0])}'
               f"</b> by {d:+.4f} mean CCIP score (mean difference "
               f"{diffs[names[1]] - diffs[names[0]]:+.4f}; lower is closer).</p>")
    return ("<table id=headline><thead><tr><th>model</th><th>mean CCIP score</th>"
            "<th>mean difference</th><th>characters</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + gap)


def pairs_section(pairs: list[dict[str, Any]]) -> str:
    """Every pair (kxl.eval.pairs): later model b against earlier model a, with the rule."""
    if not pairs:
        return ""
    rows = "".join(
        f"<tr class=\"{esc(r['verdict'])}\"><td>{esc(r['b'])}</td><td>{esc(r['a'])}</td>"
        f"<td class=num>{r['characters']}</td><td class=num>{r['mean_score_gap']:+.4f}</td>"
        f"<td class=num>{r['mean_difference_gap']:+.4f}</td><td class=num>{r['wins']}</td>"
        f"<td class=num>{r['losses']}</td><td class=num>{r['ties']}</td>"
        f"<td class=num>{r['p_value']:.4g}</td><td><b>{esc(r['verdict'])}</b></td></tr>"
        for r in pairs if r["characters"])
    return (
        "<h2>Every pair</h2><p>Each later model <b>b</b> against each earlier model <b>a</b> "
        "(config order), over the characters both were scored on: mean score gap = mean of "
        "score b &minus; score a (the first row is the headline's gap); wins / losses / ties = "
        "characters where b scores above / below / the same as a. The verdict is <b>better</b> "
        "or <b>worse</b> when a two-sided exact sign test over the characters (ties dropped) "
        f"gives p &lt; {ALPHA} in that direction, else <b>indistinguishable</b>.</p>"
        "<table id=pairs><thead><tr><th>b</th><th>a</th><th>characters</th>"
        "<th>mean score gap</th><th>mean difference gap</th><th>b wins</th><th>b loses</th>"
        f"<th>ties</th><th>p (sign test)</th><th>verdict of b</th></tr></thead><tbody>{rows}"
        "</tbody></table>")


def character_table(wide: pl.DataFrame, names: list[str]) -> str:
    cols = ["rank", "character", "series", "gender", "n_refs"]
    cols += [f"score:{n}" for n in names] + (["gap"] if "gap" in wide.columns else [])
    text = ("character", "series", "gender")
    head = "".join(f'<th data-col="{i}" data-num="{int(c not in text)}">{esc(c)}</th>'
                   for i, c in enumerate(cols))
    body = []
    for row in wide.select(cols).iter_rows():  # one row per character of the report's table
        cells = "".join(
            f"<td class=num>{v:.4f}</td>" if isinstance(v, float) else f"<td>{esc(v)}</td>"
            for v in row)
        body.append(f"<tr>{cells}</tr>")
    return (f'<table id=characters class=sortable><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def grids(inp: ReportInputs, wide: pl.DataFrame, names: list[str]) -> str:
    """Best and worst characters by the compared model's score: references vs generated."""
    key = f"score:{names[1] if len(names) >= 2 else names[0]}"
    ranked = wide.sort([key, "rank"], descending=[True, False])
    n = min(inp.examples, ranked.height)
    picks = [("best", r) for r in ranked.head(n).iter_rows(named=True)]
    picks += [("worst", r) for r in ranked.tail(n).reverse().iter_rows(named=True)
              if ranked.height > n]
    out = []
    for label, row in picks:
        refs = inp.refs.filter(pl.col("rank") == row["rank"]).head(6)
        imgs = "".join(f'<img alt="reference" src="{thumb(inp.images_root / f)}">'
                       for f in refs["file"])
        lines = [f"<div class=grid-row><span>references</span>{imgs}</div>"]
        for name in names:
            table, root = inp.generated[name]
            gen = table.filter(pl.col("rank") == row["rank"])
            gi = "".join(f'<img alt="{esc(name)}" src="{thumb(root / f)}">' for f in gen["file"])
            lines.append(f"<div class=grid-row><span>{esc(name)} "
                         f"({row[f'score:{name}']:.3f})</span>{gi}</div>")
        out.append(f'<div class="example {label}"><h3>{label}: {esc(row["character"])} '
                   f'<small>({esc(row["series"])})</small></h3>{"".join(lines)}</div>')
    return "".join(out)


def conditioning_section(results: list[dict[str, Any]]) -> str:
    """The prompt-conditioning probe per model (kxl.eval.conditioning), in plain words."""
    if not results:
        return ""
    first = results[0]
    ts = [t["timestep"] for t in first["timesteps"]]
    head = "".join(f"<th>advantage t={t}</th>" for t in ts)
    rows = []
    for r in results:
        o = r["overall"]
        cells = "".join(f"<td class=num>{t['advantage'] * 100:+.2f}%</td>" for t in r["timesteps"])
        rows.append(f"<tr><td>{esc(r['model'])}</td>{cells}"
                    f"<td class=num>{o['advantage'] * 100:+.2f}%</td>"
                    f"<td class=num>{o['top1']:.3f}</td><td class=num>{o['chance']:.3f}</td></tr>")
    return (
        "<h2>Does the model know the characters?</h2><p>CCIP scores sampled pictures, so a model "
        "that only learnt the dataset's overall style can gain on it. This probe asks the model "
        f"directly: each of {first['images']} reference pictures is noised at fixed timesteps "
        "(the same noise for every model) and the model predicts that noise once with the "
        f"character's own prompt and once with each of {first['candidates'] - 1} other "
        "characters' prompts. <b>Advantage</b> = how much smaller the error is with the right "
        "prompt (0% = the character tag makes no difference); <b>top-1</b> = how often the right "
        "prompt gives the smallest error, against chance.</p>"
        f"<table id=conditioning><thead><tr><th>model</th>{head}<th>advantage (mean)</th>"
        f"<th>top-1</th><th>chance</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def provenance(inp: ReportInputs) -> str:
    items = []
    for meta in inp.models:
        items.append(f"<h3>{esc(meta.get('name'))}</h3><pre>"
                     + esc(json.dumps(meta, indent=2, sort_keys=True)) + "</pre>")
    items.append("<h3>CCIP model</h3><pre>" + esc(json.dumps(inp.ccip, indent=2, sort_keys=True))
                 + "</pre>")
    return "".join(items)


def standin_note(ccip: dict[str, Any]) -> str:
    if not ccip.get("stand_in"):
        return (f"<p class=note>Scores from the CCIP model <code>{esc(ccip.get('model'))}</code> "
                f"of {esc(ccip.get('repo_id'))} at revision {esc(ccip.get('commit'))}.</p>")
    return ("<p class=\"note standin\" id=standin><b>A stand-in was used for the CCIP model.</b> "
            "The real CCIP network could not be downloaded for this run, so these scores come "
            "from a small substitute model that only compares the colours and shapes of the "
            "pipeline's synthetic characters. They show whether a model draws those characters, "
            "and cannot be compared with published CCIP scores.</p>")


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px}th{background:#eee;cursor:pointer}.num{text-align:right}
.note{background:#fff4d6;padding:.6em;border-left:4px solid #e0a800}.grid-row{display:flex;
align-items:center;gap:4px;margin:2px 0}.grid-row span{width:150px;font-size:12px}
img{width:96px;height:96px;object-fit:contain;background:#f4f4f4}"""
_JS = """(function(){
function sortBy(table,col,num,desc){var tb=table.tBodies[0];
var rows=Array.prototype.slice.call(tb.rows);
rows.sort(function(a,b){var x=a.cells[col].textContent,y=b.cells[col].textContent;
var c=num?((parseFloat(x)||0)-(parseFloat(y)||0)):x.localeCompare(y);return desc?-c:c;});
rows.forEach(function(r){tb.appendChild(r);});table.dataset.sorted=col+(desc?':desc':':asc');}
var t=document.getElementById('characters');var ths=t.tHead.rows[0].cells;
Array.prototype.forEach.call(ths,function(th){th.addEventListener('click',function(){
var col=+th.dataset.col;var desc=t.dataset.sorted!==col+':desc';
sortBy(t,col,th.dataset.num==='1',desc);});});
var gap=Array.prototype.filter.call(ths,function(th){return th.textContent==='gap';})[0];
if(gap){sortBy(t,+gap.dataset.col,true,true);}document.body.dataset.ready='1';})();"""


def render_report(inp: ReportInputs) -> str:
    """The whole page as one string (deterministic for the same inputs)."""
    names = [m["name"] for m in inp.models]
    wide = wide_scores(inp, names)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<title>kxl CCIP report</title><style>" + _CSS + "</style></head><body>"
        "<h1>CCIP evaluation</h1>" + standin_note(inp.ccip)
        + f"<p>{wide.height} characters; threshold {float(inp.ccip.get('threshold', 0)):.4f} "
        "(difference &le; threshold = same character); score = fraction of (reference, "
        "generated) pairs judged the same, averaged per generated image.</p>"
        "<h2>Headline</h2>" + headline(inp, names)
        + pairs_section(inp.pairs)
        + "<h2>Distribution</h2>" + histogram_svg(inp, names)
        + "<h2>Characters</h2><p>Click a header to sort; gap = "
        + (f"{esc(names[1])} &minus; {esc(names[0])}" if len(names) >= 2 else "n/a")
        + ".</p>" + character_table(wide, names)
        + "<h2>Best and worst characters</h2>" + grids(inp, wide, names)
        + conditioning_section(inp.conditioning)
        + "<h2>Provenance</h2>" + provenance(inp)
        + "<script>" + _JS + "</script></body></html>\n"
    )
