"""The data funnel: selected -> kept -> captioned -> images -> planned, with every drop reason.

Counts come from the stages' own summaries (posts, manifest, plan) and from aggregates of the
tables (reason counts, per-range counts from id columns only); nothing is recomputed. The
expected counts are the config's `counts` section, judged by the count gate's own rule
(`kxl.checks.counts.problems`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kxl.checks.counts import CountsConfig, problems
from kxl.report.inputs import Missing, RunPaths, collect, read_json, scan

STAGES = ("selected", "kept", "captioned", "images", "planned")


@dataclass(frozen=True)
class Funnel:
    totals: dict[str, int | None]  # per STAGES entry; None = its artifact is missing
    per_range: pl.DataFrame  # range_index, start, stop, selected, kept, captioned, images
    drops: pl.DataFrame  # stage, reason, count (zero counts left out)
    expected: list[dict[str, Any]]  # name, expected, actual, ok
    gate: str  # the count gate's state in words
    missing: list[Missing] = field(default_factory=list)


def drop_table(manifest_summary: dict[str, Any] | None, captions_missing: int | None,
               image_reasons: pl.DataFrame | None, plan_dropped: int | None) -> pl.DataFrame:
    """Every drop by stage and reason; posts that vanish without a reason are named too."""
    rows: list[tuple[str, str, int]] = []
    if manifest_summary is not None:
        rows += [("manifest", r, int(n)) for r, n in sorted(manifest_summary["dropped"].items())]
    if captions_missing:
        rows.append(("captions", "no caption", captions_missing))
    if image_reasons is not None:
        rows += [("images", r, int(n)) for r, n in image_reasons.sort("reason").iter_rows()]
    if plan_dropped:
        rows.append(("plan", "not planned", plan_dropped))
    df = pl.DataFrame(rows, schema={"stage": pl.String, "reason": pl.String, "count": pl.Int64},
                      orient="row")
    return df.filter(pl.col("count") > 0)


def range_counts(kept: pl.LazyFrame, captions: pl.LazyFrame | None,
                 dataset: pl.LazyFrame | None) -> pl.DataFrame:
    """kept / captioned / images per posts range, from id columns only (semi joins by id)."""
    lf = kept.select("id", "range_index")
    aggs = [pl.len().alias("kept")]
    for name, other in (("captioned", captions), ("images", dataset)):
        if other is None:
            continue
        lf = lf.join(other.select("id").with_columns(pl.lit(True).alias(name)), on="id",
                     how="left")
        aggs.append(pl.col(name).count().cast(pl.Int64).alias(name))
    return (lf.group_by("range_index").agg(aggs).sort("range_index")
            .with_columns(pl.col("range_index").cast(pl.Int64), pl.col("kept").cast(pl.Int64))
            .collect(engine="streaming"))


def expected_rows(actual: dict[str, Any], cfg: CountsConfig) -> list[dict[str, Any]]:
    """One row per expected count of the config, judged as the count gate judges it."""
    out = []
    for name, want in vars(cfg.expected).items():
        if want is None:
            continue
        got = actual.get(name)
        if got is None:
            out.append({"name": name, "expected": want, "actual": None, "ok": None})
            continue
        single = CountsConfig(expected=type(cfg.expected)(**{name: want}),
                              tolerance=cfg.tolerance)
        out.append({"name": name, "expected": want, "actual": got,
                    "ok": not problems({name: got}, single)})
    return out


def read_funnel(paths: RunPaths, counts_cfg: CountsConfig | None) -> Funnel:
    missing: list[Missing] = []

    def got(x: Any) -> Any:
        if isinstance(x, Missing):
            missing.append(x)
            return None
        return x

    posts = got(read_json(paths.posts_summary))
    manifest = got(read_json(paths.manifest_summary))
    plan = got(read_json(paths.plan_summary))
    counts = read_json(paths.counts)
    kept = got(scan(paths.kept, ["id", "range_index"]))
    captions = got(scan(paths.captions, ["id"]))
    dataset = got(scan(paths.dataset, ["id"]))
    reasons_lf = got(scan(paths.images_dropped, ["reason"]))
    per_range = _per_range(posts, kept, captions, dataset, paths, missing)
    reasons = None if reasons_lf is None else got(collect(
        reasons_lf.group_by("reason").agg(pl.len().cast(pl.Int64).alias("count")),
        paths.images_dropped))
    totals = {
        "selected": posts and int(posts["selected"]),
        "kept": manifest and int(manifest["kept"]),
        "captioned": _rows(captions, paths.captions, missing),
        "images": _rows(dataset, paths.dataset, missing),
        "planned": plan and int(plan["images"]),
    }
    kept_n, cap_n, img_n, plan_n = (totals[k] for k in ("kept", "captioned", "images", "planned"))
    drops = drop_table(
        manifest, kept_n - cap_n if kept_n is not None and cap_n is not None else None,
        reasons, img_n - plan_n if img_n is not None and plan_n is not None else None)
    cfg = counts_cfg or _cfg_from_counts(counts)
    actual = {
        "selected_posts": totals["selected"],
        "selected_per_range": posts and [int(r["drawn"]) for r in posts["ranges"]],
        "images": totals["images"],
        "buckets": _bucket_count(paths),
        "steps": plan and int(plan["steps"]),
    }
    expected = expected_rows(actual, cfg) if cfg is not None else []
    return Funnel(totals, per_range, drops, expected, _gate(counts), missing)


def _rows(lf: pl.LazyFrame | None, path: Any, missing: list[Missing]) -> int | None:
    if lf is None:
        return None
    df = collect(lf.select(pl.len()), path)
    if isinstance(df, Missing):
        missing.append(df)
        return None
    return int(df.item())


def _per_range(posts: dict[str, Any] | None, kept: pl.LazyFrame | None,
               captions: pl.LazyFrame | None, dataset: pl.LazyFrame | None, paths: RunPaths,
               missing: list[Missing]) -> pl.DataFrame:
    ranges = pl.DataFrame(
        [(int(r["index"]), int(r["start"]), r["stop"], int(r["drawn"]))
         for r in (posts or {}).get("ranges", [])],
        schema={"range_index": pl.Int64, "start": pl.Int64, "stop": pl.Int64,
                "selected": pl.Int64}, orient="row")
    if kept is None:
        return ranges
    try:
        counts = range_counts(kept, captions, dataset)
    except Exception as exc:  # a truncated table fails only when its pages are read
        missing.append(Missing(str(paths.kept), f"per-range counts unreadable "
                               f"({exc.__class__.__name__})"))
        return ranges
    return ranges.join(counts, on="range_index", how="full", coalesce=True).sort("range_index")


def _bucket_count(paths: RunPaths) -> int | None:
    """Distinct buckets holding images, as the count gate counts them (histogram rows > 0)."""
    try:
        hist = pl.read_csv(paths.histogram)
        return int(hist.filter(pl.col("count") > 0).height)
    except Exception:  # missing or malformed: the buckets section names it
        return None


def _cfg_from_counts(counts: dict[str, Any] | Missing) -> CountsConfig | None:
    from kxl.config import from_dict

    if isinstance(counts, Missing):
        return None
    try:
        return from_dict(CountsConfig, counts["config"], "checks/counts.json config")
    except Exception:  # an older counts.json: the table is left out, the gate line stays
        return None


def _gate(counts: dict[str, Any] | Missing) -> str:
    if isinstance(counts, Missing):
        return (f"count gate: {counts} (the gate has not run, or it stopped the run: see "
                "logs/checks/check_counts.log)")
    found = counts.get("problems") or []
    if not found:
        return "count gate: passed (every expected count within the tolerance)"
    return f"count gate: {len(found)} count(s) off, trained anyway (enforce: false): " + (
        "; ".join(found))
