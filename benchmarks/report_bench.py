"""The run report at full scale: `kxl report` over a synthetic finished Epsilon-sized run.

Input (built first, not timed): 5,350,000 kept posts in Epsilon's three ranges, captions for
all, 5,210,319 valid images (dataset.parquet) and 139,681 dropped ones, their buckets
(buckets.parquet, assigned by kxl with the Epsilon settings), the B4 A16 W4 plan (20,354 steps)
and a 20,354-row metrics.csv whose rows_hash are the plan's, plus checkpoints, a train log with a
resume and provenance records. The report reads only aggregates of those tables; the baseline
is the obvious way, reading the same tables whole with polars and aggregating in memory.
`ratio_vs_baseline` = seconds / baseline seconds.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.util import run_measured

FULL = 5_210_319
KEPT = 5_350_000
STEPS = 20_354
RANGES = [(0, 3_000_000, 1_000_000), (3_000_000, 5_000_000, 1_000_000), (5_000_000, None, 0)]


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_full_run(root: Path, n: int, seed: int = 0) -> None:
    """A finished run's artifacts under root/results (n valid images), as the stages write them."""
    import polars as pl

    from benchmarks.plan_bench import EPSILON, danbooru_like_sizes
    from kxl.buckets.assign import assign
    from kxl.buckets.schema import BUCKETS_SCHEMA, buckets_frame, histogram_csv
    from kxl.plan.build import PLAN_SCHEMA, build_plan
    from kxl.plan.config import PlanConfig
    from kxl.provenance import record
    from kxl.tables import write_table

    res = root / "results"
    rng = np.random.default_rng(seed)
    kept_n = n * KEPT // FULL
    ids = np.sort(rng.choice(7_350_000, kept_n, replace=False)).astype(np.int64)
    rng_index = np.searchsorted([3_000_000, 5_000_000], ids, side="right").astype(np.int16)
    drop = np.sort(rng.choice(kept_n, kept_n - n, replace=False))
    ok = np.ones(kept_n, bool)
    ok[drop] = False
    for d in ("manifest", "captions", "images", "buckets", "plan", "train", "checks", "audit"):
        (res / d).mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"id": ids, "range_index": rng_index}).write_parquet(
        res / "manifest/kept.parquet")
    pl.DataFrame({"id": ids}).with_columns(
        caption=pl.format("1girl, solo, tag{}, masterpiece", pl.col("id") % 997)).write_parquet(
        res / "captions/captions.parquet")
    w, h = danbooru_like_sizes(n, seed)
    good = ids[ok]
    pl.DataFrame({"id": good, "file": pl.Series(good).cast(pl.String), "width": w.astype(np.int32),
                  "height": h.astype(np.int32), "sha256": pl.Series(good).hash().cast(pl.String)}
                 ).write_parquet(res / "images/dataset.parquet")
    names = np.array(["missing_file", "corrupt_image", "too_large"])
    reasons = names[rng.integers(0, 3, drop.size)]
    pl.DataFrame({"id": ids[drop], "reason": reasons, "detail": ""}).write_parquet(
        res / "images/dropped.parquet")
    a = assign(good, w, h, resolution=1024, min_size=256, max_size=4096, step=64,
               no_upscale=False, crop_convention="kohya-0.8.7")
    write_table(buckets_frame(good, w, h, a), res / "buckets/buckets.parquet", BUCKETS_SCHEMA)
    (res / "buckets/histogram.csv").write_text(histogram_csv(a.bucket_set, a.bucket))
    plan, summary = build_plan(good, a.bucket, PlanConfig(**EPSILON), 1337)
    write_table(plan, res / "plan/plan.parquet", PLAN_SCHEMA)
    _json(res / "plan/summary.json", summary)
    _summaries(res, ids, rng_index, kept_n)
    _metrics(res, plan, int(summary["steps"]))
    _train_files(root, int(summary["steps"]))
    outs = ["manifest/kept.parquet", "captions/captions.parquet", "images/dataset.parquet",
            "buckets/buckets.parquet", "plan/plan.parquet", "train/metrics.csv"]
    for o in outs:
        record("bench", [res / o], [res / "plan/summary.json"])
    _json(res / "audit/verify.json", {"root": "results", "checked": len(outs), "passed": True,
                                      "problems": []})


def _summaries(res: Path, ids: np.ndarray, rng_index: np.ndarray, kept_n: int) -> None:
    drawn = np.bincount(rng_index, minlength=3) * 50 // 47  # ~6% dropped by the manifest
    _json(res / "posts/summary.json", {"selected": int(drawn.sum()), "ranges": [
        {"index": i, "start": s, "stop": e, "count": c or "all", "drawn": int(drawn[i])}
        for i, (s, e, c) in enumerate(RANGES)]})
    gone = int(drawn.sum()) - kept_n
    _json(res / "manifest/summary.json", {"selected": int(drawn.sum()), "kept": kept_n,
                                          "dropped_total": gone, "dropped": {
                                              "deleted": gone // 2, "not_image": gone // 4,
                                              "gold_only": gone - gone // 2 - gone // 4}})
    _json(res / "checks/counts.json", {"actual": {}, "problems": [], "config": {
        "expected": {"images": 5_210_319, "steps": 20_354}, "tolerance": 0.0, "enforce": True}})


def _metrics(res: Path, plan: object, steps: int) -> None:
    import polars as pl

    from kxl.plan.read import rows_hash

    assert isinstance(plan, pl.DataFrame)
    hashes = [rows_hash(g) for _, g in plan.group_by("step", maintain_order=True)]
    s = np.arange(steps)
    rng = np.random.default_rng(1)
    pl.DataFrame({
        "step": s, "loss": 0.12 + 0.05 * np.exp(-s / 3000) + rng.normal(0, 0.02, steps),
        "lr_text_encoder": np.full(steps, 3e-6), "lr_unet": np.full(steps, 1e-5),
        "grad_norm": np.abs(rng.normal(0.3, 0.1, steps)),
        "scaler_scale": 2.0 ** (16 - (s // 5000)), "images_per_s": rng.normal(5.4, 0.3, steps),
        "rows_hash": hashes,
    }).write_csv(res / "train/metrics.csv")


def _train_files(root: Path, steps: int) -> None:
    for step in (2000, 10000, 15300, steps - 100, steps):
        _json(root / f"results/train/checkpoints/step-{step:08d}/manifest.json",
              {"step": step, "files": {"lokr.safetensors": {"sha256": f"{step:064x}",
                                                            "size": 1}}})
    (root / "logs/train").mkdir(parents=True, exist_ok=True)
    (root / "logs/train/train.log").write_text(
        "[rank 0] resumed from results/train/checkpoints/step-00015300 at plan step index "
        "15300\n")


_SETUP = """
from pathlib import Path
from benchmarks.report_bench import make_full_run
make_full_run(Path({root!r}), {n})
"""
_REPORT = """
from kxl.cli import main
assert main(["report", "--results", {res!r}, "--logs", {logs!r}, "--out", {out!r}]) == 0
"""
_LIVE = """
import shutil
shutil.copy({res!r} + "/train/metrics.csv", {res!r} + "/train/metrics.running.csv")
from kxl.cli import main
assert main(["report", "--watch", "--once", "--results", {res!r}, "--logs", {logs!r},
             "--out", {out!r}]) == 0
"""
# The obvious way: every table read whole, then the same aggregates in memory.
_EAGER = """
import polars as pl
r = {res!r}
kept = pl.read_parquet(r + "/manifest/kept.parquet")
cap = pl.read_parquet(r + "/captions/captions.parquet")
ds = pl.read_parquet(r + "/images/dataset.parquet")
dr = pl.read_parquet(r + "/images/dropped.parquet")
bk = pl.read_parquet(r + "/buckets/buckets.parquet")
plan = pl.read_parquet(r + "/plan/plan.parquet")
m = pl.read_csv(r + "/train/metrics.csv")
k = kept.with_columns(cap=kept["id"].is_in(cap["id"]), img=kept["id"].is_in(ds["id"]))
k.group_by("range_index").agg(pl.len(), pl.col("cap").sum(), pl.col("img").sum())
dr.group_by("reason").len()
bk.group_by("bucket").agg((pl.col("resized_w") > pl.col("orig_w")).sum())
plan.filter(pl.col("slot") == 0).group_by("bucket").len()
"""


def run(quick: bool) -> list[dict]:
    n = 260_000 if quick else FULL
    env = {"OMP_NUM_THREADS": "2"}
    with tempfile.TemporaryDirectory() as d:
        res, logs = f"{d}/results", f"{d}/logs"
        run_measured(_SETUP.format(root=d, n=n), env)
        fmt = {"res": res, "logs": logs}
        base = run_measured(_EAGER.format(**fmt), env)
        full = run_measured(_REPORT.format(out=f"{d}/run.html", **fmt), env)
        live = run_measured(_LIVE.format(out=f"{d}/live.html", **fmt), env)
        page_kb = Path(f"{d}/run.html").stat().st_size / 1024
        steps = json.loads(Path(f"{res}/plan/summary.json").read_text())["steps"]
    return [
        {"name": f"eager baseline: tables read whole ({n:,} images)", "seconds": base["seconds"],
         "peak_rss_mb": base["peak_rss_mb"], "ratio_vs_baseline": 1.0,
         "note": "kept, captions, dataset, dropped, buckets, plan, metrics; same aggregates"},
        {"name": f"kxl report ({n:,} images, {steps:,} steps)", "seconds": full["seconds"],
         "peak_rss_mb": full["peak_rss_mb"],
         "ratio_vs_baseline": full["seconds"] / base["seconds"],
         "note": f"lazy aggregates + 9 plan steps re-hashed; page {page_kb:.0f} KiB"},
        {"name": f"kxl report --watch --once ({steps:,} steps)", "seconds": live["seconds"],
         "peak_rss_mb": live["peak_rss_mb"],
         "ratio_vs_baseline": live["seconds"] / base["seconds"],
         "note": "training plots only, from metrics.running.csv"},
    ]


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
