"""The report's HTML: one section per part, each showing what it could read and naming what it
could not. Self-contained (inline CSS, SVG and a few lines of script that only count the drawn
plots for the browser test): no external URL, so it opens offline and inside
`snakemake --report`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import polars as pl

from kxl.report.buckets import Buckets
from kxl.report.funnel import Funnel
from kxl.report.inputs import Missing
from kxl.report.provenance import Provenance, package_table
from kxl.report.training import Resume, Training, smoothed, thin
from kxl.svg import (
    DRAWN_SCRIPT,
    PALETTE,
    PLOT_CSS,
    Mark,
    Series,
    bar_chart,
    fmt,
    line_chart,
    stacked_bars,
)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;
padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.notice{background:#fff4e0;border:1px solid #f0b040;padding:6px 10px;margin:8px 0}
.problem{background:#fde8e8;border:1px solid #d04040;padding:6px 10px;margin:8px 0}
.ok{color:#1a7f37}.bad{color:#c0392b}.mono{font-family:ui-monospace,monospace;font-size:12px}
figcaption{font-size:12px;color:#555}text.inbar{font-size:11px;fill:#fff}
nav a{margin-right:12px}details{margin:6px 0}
.legend{font-size:12px;display:flex;flex-wrap:wrap;gap:4px 14px;max-width:760px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
""" + PLOT_CSS


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str = "") -> str:
    """An HTML table; numbers right-aligned and grouped, None shown as a dash."""
    def cell(v: Any) -> str:
        if v is None:
            return "<td class=num>&ndash;</td>"
        if isinstance(v, bool):
            return f"<td>{'yes' if v else 'no'}</td>"
        if isinstance(v, int):
            return f"<td class=num>{v:,}</td>"
        if isinstance(v, float):
            return f"<td class=num>{fmt(v)}</td>"
        if isinstance(v, Raw):
            return f"<td>{v.html}</td>"
        return f"<td>{escape(str(v))}</td>"

    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    attr = f' id="{table_id}"' if table_id else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw:
    """Already-escaped HTML for a table cell."""

    def __init__(self, html: str) -> None:
        self.html = html


def notices(missing: Sequence[Missing | str], cls: str = "notice") -> str:
    return "".join(f'<div class="{cls}">{escape(str(m))}</div>' for m in missing)


def pct(part: int | None, whole: int | None) -> str:
    return "" if part is None or not whole else f"{100 * part / whole:.1f}%"


# -- data funnel --------------------------------------------------------------------------
def funnel_section(f: Funnel | Missing) -> str:
    if isinstance(f, Missing):
        return "<h2 id=funnel>Data funnel</h2>" + notices([f])
    stages = [(k, v) for k, v in f.totals.items() if v is not None]
    out = ["<h2 id=funnel>Data funnel</h2>", notices(f.missing),
           bar_chart("funnel", "posts at each stage", [k for k, _ in stages],
                     [v for _, v in stages],
                     note="selected: posts drawn (posts/summary.json); kept: after the manifest "
                     "filters; captioned: captions.parquet; images: valid images "
                     "(images/dataset.parquet); planned: images in the plan")]
    out.append(_drop_bars(f))
    selected = f.totals.get("selected")
    out.append(table(["stage", "reason", "posts", "of selected"],
                     [(s, r, n, pct(n, selected)) for s, r, n in f.drops.iter_rows()],
                     "drops"))
    out.append("<h3>Per posts range</h3>" + table(
        ["range", "ids", "selected", "kept", "captioned", "images", "images / selected"],
        [(r["range_index"], _ids(r["start"], r["stop"]),
          r["selected"], r.get("kept"), r.get("captioned"), r.get("images"),
          pct(r.get("images"), r["selected"])) for r in f.per_range.iter_rows(named=True)],
        "ranges"))
    out.append("<h3>Expected counts (config <code>counts</code>)</h3>")
    out.append(table(["count", "expected", "actual", "within tolerance"],
                     [(e["name"], _num(e["expected"]), _num(e["actual"]),
                       Raw(_okmark(e["ok"]))) for e in f.expected], "expected")
               if f.expected else "<p>No expected counts (config <code>counts</code> not "
               "given and no checks/counts.json).</p>")
    out.append(f"<p>{escape(f.gate)}</p>")
    return "".join(out)


def _ids(start: int | None, stop: int | None) -> str:
    return f"[{start or 0:,}, {'open' if stop is None else f'{stop:,}'})"


def _num(v: Any) -> Any:
    return ", ".join(f"{x:,}" for x in v) if isinstance(v, list) else v


def _okmark(ok: bool | None) -> str:
    return ("<span class=ok>yes</span>" if ok else "&ndash;" if ok is None
            else "<span class=bad>NO</span>")


TRAINED = PALETTE[2]


def _drop_bars(f: Funnel) -> str:
    by_stage = f.drops.group_by("stage", maintain_order=True).agg(pl.col("count").sum())
    final = f.totals.get("planned") or f.totals.get("images") or 0
    rows: list[tuple[str, list[tuple[str, int]]]] = [
        ("selected posts", [("trained on", int(final))]
         + [(f"dropped: {s}", int(n)) for s, n in by_stage.iter_rows()])]
    for stage in by_stage["stage"].to_list():
        part = f.drops.filter(pl.col("stage") == stage)
        rows.append((f"{stage} drops", [(r, int(n)) for _, r, n in part.iter_rows()]))
    names = dict.fromkeys(n for _, parts in rows for n, _ in parts if n != "trained on")
    others = [c for c in PALETTE if c != TRAINED]  # green means trained on, nothing else
    colors = {n: others[i % len(others)] for i, n in enumerate(names)}
    colors["trained on"] = TRAINED
    return stacked_bars("drops", "where the selected posts went (each bar is 100%)", rows,
                        colors, note="hover a segment for its count")


# -- buckets ------------------------------------------------------------------------------
def buckets_section(b: Buckets | Missing) -> str:
    if isinstance(b, Missing):
        return "<h2 id=buckets>Buckets</h2>" + notices([b])
    t = b.table
    labels = [f"{w}x{h}" for w, h in zip(t["width"], t["height"], strict=True)]
    tips = [f"bucket {k} {w}x{h} (aspect {w / h:.3g}): {n:,} images"
            for k, w, h, n in zip(t["bucket"], t["width"], t["height"], t["images"], strict=True)]
    out = ["<h2 id=buckets>Buckets</h2>", notices(b.missing),
           bar_chart("buckets", f"images per bucket ({t.height} buckets), tall to wide",
                     labels, t["images"].to_list(), titles=tips,
                     x_label="bucket w x h, by aspect ratio w/h")]
    if "micro_batches" in t.columns:
        out.append(bar_chart("plan-buckets", "the plan's micro-batches per bucket", labels,
                             t["micro_batches"].to_list(), color=PALETTE[1],
                             x_label="bucket w x h, by aspect ratio w/h"))
    share = [f"{b.images:,} images in {t.height} buckets"]
    if b.upscaled is not None and b.cropped is not None:
        share.append(f"upscaled: {b.upscaled:,} ({pct(b.upscaled, b.images)})")
        share.append(f"cropped: {b.cropped:,} ({pct(b.cropped, b.images)})")
    out.append(f"<p id=bucket-shares>{escape('; '.join(share))}</p>")
    cols = ["bucket", "w x h", "aspect w/h", "images", "upscaled", "cropped", "micro-batches",
            "steps"]
    rows = [(r["bucket"], f"{r['width']}x{r['height']}", float(r["aspect"]), r["images"],
             r.get("upscaled"), r.get("cropped"), r.get("micro_batches"), r.get("steps"))
            for r in t.iter_rows(named=True)]
    out.append("<details><summary>per bucket</summary>" + table(cols, rows, "bucket-table")
               + f"<p>steps = micro-batches / {b.micros_per_step or '?'} (world size x gradient "
               "accumulation).</p></details>")
    return "".join(out)


# -- training -----------------------------------------------------------------------------
def training_marks(t: Training) -> list[Mark]:
    marks = [Mark(c.step, f"ckpt {c.step} {(c.lokr_sha256 or '?')[:8]}",
                  "#999" if c.superseded else "#2a9d5c",
                  f"checkpoint step {c.step}{' (superseded)' if c.superseded else ''}: "
                  f"lokr sha256 {c.lokr_sha256} ({c.folder})", c.superseded)
             for c in t.checkpoints]
    marks += [Mark(r.step, f"resume @{r.step}" + (f" ({clock(r.down_s)} down)"
                                                   if r.down_s is not None else ""),
                   "#c0392b", f"{r.detail} [{r.source}]", True) for r in t.resumes]
    return marks


def clock(seconds: float) -> str:
    """H:MM:SS (hours past 24 kept: 27:03:04); a negative gap (another host's clock) signed."""
    s = round(abs(seconds))
    return f"{'-' if seconds < 0 else ''}{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def downtime_text(r: Resume) -> str | None:
    if r.down_s is None:
        return None
    return f"resumed at step {r.step} after {clock(r.down_s)} down"


def training_plots(t: Training) -> str:
    m = t.metrics
    cols = ["loss", "loss_smoothed", "lr_text_encoder", "lr_unet", "grad_norm", "scaler_scale",
            "images_per_s"]
    th = thin(m.with_columns(smoothed(m["loss"]).alias("loss_smoothed")), cols)
    x = th["step"].to_numpy()

    def s(col: str, name: str, color: str, band: bool = False, width: float = 1.5) -> Series:
        b = (th[f"{col}_min"].to_numpy(), th[f"{col}_max"].to_numpy()) if band else None
        return Series(name, x, th[col].to_numpy(), color, b, width)

    marks = training_marks(t)
    k = max(1, -(-m.height // len(x))) if len(x) else 1
    binned = f" (bins of {k} steps: mean, with min-max band)" if k > 1 else ""
    return "".join([
        line_chart("loss", "loss", [s("loss", "loss", "#9bb5e6", band=k > 1, width=1),
                                    s("loss_smoothed", "smoothed", PALETTE[0], width=2)],
                   marks=marks, note=f"mean over the step's micro-batches{binned}; smoothed: "
                   f"exponential moving average over {max(10, m.height // 100)} steps"),
        line_chart("lr", "learning rates", [s("lr_unet", "unet", PALETTE[1]),
                                            s("lr_text_encoder", "text encoders", PALETTE[3])],
                   marks=marks),
        line_chart("grad-norm", "gradient norm (before clipping)",
                   [s("grad_norm", "grad norm", PALETTE[2], band=k > 1)], marks=marks),
        line_chart("loss-scale", "loss scale (GradScaler; 1 on CPU)",
                   [s("scaler_scale", "loss scale", PALETTE[4])], marks=marks,
                   log_y=_spans_decades(m["scaler_scale"])),
        line_chart("speed", "images / s", [s("images_per_s", "images/s", PALETTE[7],
                                             band=k > 1)], marks=marks),
    ])


def _spans_decades(v: pl.Series) -> bool:
    """Log scale for the loss scale only when it moved by 10x or more (fp16 overflows)."""
    return bool(v.len() and (v > 0).all() and v.max() >= 10 * v.min())  # type: ignore[operator]


def summary_text(t: Training) -> str:
    """Steps done, loss, speed and time left, in one line (the page and `--watch` print it)."""
    m = t.metrics
    last = int(m["step"].max()) if m.height else -1
    done, total = last + 1, t.plan_steps
    recent = m.tail(max(1, m.height // 20))
    speed = float(recent["images_per_s"].mean()) if m.height else 0.0
    parts = [f"{done:,} step(s) logged" + (f" of {total:,} in the plan ({pct(done, total)})"
                                           if total else "")]
    if m.height:
        parts.append(f"last loss {float(m['loss'][-1]):.4g}, smoothed "
                     f"{float(smoothed(m['loss'])[-1]):.4g} (first step {float(m['loss'][0]):.4g})")
        parts.append(f"{speed:.3g} images/s over the last {recent.height} step(s)")
    if total and t.samples_per_step and speed > 0 and done < total:
        eta = (total - done) * t.samples_per_step / speed
        parts.append(f"about {_duration(eta)} to the end of the plan at that speed")
    return "; ".join(parts)


def training_summary(t: Training) -> str:
    return f'<p id="training-summary">{escape(summary_text(t))}.</p>'


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def training_section(t: Training | Missing) -> str:
    if isinstance(t, Missing):
        return "<h2 id=training>Training</h2>" + notices([t])
    out = ["<h2 id=training>Training</h2>", notices(t.missing), notices(t.problems, "problem"),
           f"<p>From <code>{escape(t.source)}</code>.</p>", training_summary(t),
           training_plots(t), notices(t.notes)]
    out.append("<h3>Checkpoints</h3>" + (table(
        ["step", "lokr.safetensors sha256", "folder", "state"],
        [(c.step, Raw(f"<span class=mono>{escape(c.lokr_sha256 or '?')}</span>"), c.folder,
          "superseded" if c.superseded else "kept") for c in t.checkpoints], "checkpoints")
        if t.checkpoints else "<p>No checkpoints found.</p>"))
    out.append("<h3>Resumes</h3>" + (table(
        ["at step", "source", "what", "wall-clock downtime (rows step-1 to step)"],
        [(r.step, r.source, r.detail, downtime_text(r)) for r in t.resumes],
        "resumes") if t.resumes else "<p>None: one uninterrupted session (TensorBoard event "
        "files and the train log).</p>"))
    return "".join(out)


# -- provenance ---------------------------------------------------------------------------
def verify_block(p: Provenance) -> str:
    v = p.verify
    if isinstance(v, Missing):
        return ""  # named among the section's notices
    head = (f"<p id=verify class=ok>kxl verify: passed ({v.get('checked', 0):,} records "
            "re-hashed, artifacts and inputs unchanged).</p>" if v.get("passed") else
            f"<p id=verify class=bad>kxl verify: {len(v.get('problems', []))} problem(s) in "
            f"{v.get('checked', 0):,} records:</p>" + notices(
                [f"{q['artifact']}: {q['problem']}" for q in v.get("problems", [])], "problem"))
    if p.stale_verify:
        head += notices([f"made after this verify run, so not covered by it: "
                         f"{', '.join(p.stale_verify)}"])
    return head


def provenance_section(p: Provenance) -> str:
    rows = []
    for r in p.records:
        inputs = "<br>".join(
            f"{escape(i.path)} <span class=mono>{i.sha256[:10]}</span> "
            + {"same": "<span class=ok>= its record</span>",
               "changed": "<span class=bad>its record now differs</span>",
               "no record": ""}[i.now] for i in r.inputs)
        rows.append((r.artifact, r.stage, Raw(f'<span class=mono title="{r.sha256}">'
                                              f"{r.sha256[:16]}</span>"), r.size, Raw(inputs),
                     f"{r.kxl_version} {(r.git_commit or '')[:12]}"))
    pk = []
    for pkg, versions in package_table(p.records).items():
        pk.append((pkg, Raw("<br>".join(f"{escape(v)}" + (f" ({len(a)} artifact(s))"
                                                           if len(versions) > 1 else "")
                                        for v, a in versions.items()))))
    env: dict[str, set[str]] = {}
    for r in p.records:
        for key, val in r.environment.items():
            env.setdefault(key, set()).add(str(val))
    return "".join([
        "<h2 id=provenance>Provenance</h2>", notices(p.missing), verify_block(p),
        f"<p>{len(p.records)} provenance records (dir/.prov/name.json). An input marked "
        "&ldquo;= its record&rdquo; has the sha256 its own record states.</p>",
        table(["artifact", "stage", "sha256", "bytes", "inputs (sha256 as recorded)",
               "kxl, commit"], rows, "provenance"),
        "<h3>Versions</h3>", table(["package", "version"], pk, "versions"),
        "<h3>Environment</h3>",
        table(["fact", "values"], [(k, ", ".join(sorted(v))) for k, v in sorted(env.items())]),
    ])


# -- links and the page -------------------------------------------------------------------
def links_section(out: Path, pages: list[tuple[str, Path]]) -> str:
    items = []
    for name, path in pages:
        rel = os.path.relpath(path, out.parent)
        state = "" if path.exists() else " (not built)"
        items.append(f'<li><a href="{escape(rel)}">{escape(name)}</a>{state}</li>')
    return ("<h2 id=links>Other pages</h2><ul>" + "".join(items) + "</ul><p>Inside "
            "<code>snakemake --report</code> each is its own category.</p>")


def page(title: str, subtitle: str, problems: Sequence[str], sections: Sequence[str],
         refresh_s: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    nav = "".join(f'<a href="#{k}">{k}</a>' for k in
                  ("funnel", "buckets", "training", "provenance", "links")
                  if any(f"id={k}>" in s for s in sections))
    summary = (f'<div class="problem" id="problems"><b>{len(problems)} problem(s)</b>'
               "<ul>" + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul></div>"
               if problems else "")
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>" + meta
            + f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            + f"<h1>{escape(title)}</h1><p>{escape(subtitle)}</p><nav>{nav}</nav>" + summary
            + "".join(sections) + f"<script>{DRAWN_SCRIPT}</script></body></html>\n")
