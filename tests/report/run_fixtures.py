"""A small hand-made finished run (every artifact the run report reads), with its numbers known.

12 posts drawn in two ranges (8 + 4); the manifest keeps 9 (ids 1-9: 1-6 from range 0, 7-9
from range 1) and drops 2 deleted + 1 not_image; captions exist for ids 1-8; the images stage
drops id 6 (corrupt_image) and id 8 (missing_file), so the dataset is ids 1,2,3,4,5,7,9.
Buckets (by aspect): 64x128 holds ids 1,2; 96x96 holds 3,4,5,7; 128x64 holds 9. Ids 1 and 3 are
upscaled; ids 1, 3 and 9 are cropped. The plan: batch 2, one process, 2 epochs: per epoch one
micro-batch of 64x128, two of 96x96, one (short) of 128x64 = 4 steps, 8 in all, 14 samples.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl

from kxl.plan.build import PLAN_SCHEMA
from kxl.tables import write_table

DATASET = [1, 2, 3, 4, 5, 7, 9]
BUCKET_OF = {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 7: 1, 9: 2}
BUCKET_SIZE = {0: (64, 128), 1: (96, 96), 2: (128, 64)}
UPSCALED = {1, 3}
CROPPED = {1, 3, 9}
# (bucket, ids) per micro-batch of one epoch; each micro-batch is one optimizer step
EPOCH = [(0, [1, 2]), (1, [3, 4]), (1, [5, 7]), (2, [9])]
STEPS = 2 * len(EPOCH)
LOSS = [0.5, 0.4, 0.45, 0.3, 0.35, 0.25, 0.3, 0.2]
CKPT_SHA = {4: "ab" * 32, 8: "cd" * 32}


def plan_rows() -> pl.DataFrame:
    rows = []
    for epoch in range(2):
        for i, (bucket, ids) in enumerate(EPOCH):
            for slot, pid in enumerate(ids):
                rows.append((epoch * len(EPOCH) + i, 0, 0, slot, epoch, pid, bucket,
                             1000 * epoch + pid))
    return pl.DataFrame(rows, schema=PLAN_SCHEMA, orient="row")


def step_hash(rows: pl.DataFrame) -> str:
    """metrics.csv's rows_hash as docs/formats.md section 8 defines it, written out here."""
    h = hashlib.sha256()
    for col, dtype in (("rank", np.int16), ("micro", np.int16), ("slot", np.int16),
                       ("post_id", np.int64), ("sample_seed", np.uint64)):
        h.update(np.asarray(rows[col].to_list(), dtype=dtype).tobytes())
    return h.hexdigest()[:16]


def metrics_frame(plan: pl.DataFrame) -> pl.DataFrame:
    hashes = [step_hash(plan.filter(pl.col("step") == s)) for s in range(STEPS)]
    return pl.DataFrame({
        "step": list(range(STEPS)), "loss": LOSS,
        "lr_text_encoder": [0.25e-3 * min(1, (s + 1) / 4) for s in range(STEPS)],
        "lr_unet": [1e-3 * min(1, (s + 1) / 4) for s in range(STEPS)],
        "grad_norm": [0.2] * STEPS, "scaler_scale": [65536.0] * 4 + [32768.0] * 4,
        "images_per_s": [10.0] * STEPS, "rows_hash": hashes,
    })


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_run(root: Path) -> Path:
    """Write the run under root/results (and root/logs); returns root/results."""
    res = root / "results"
    _json(res / "posts/summary.json", {"selected": 12, "ranges": [
        {"index": 0, "start": 0, "stop": 100, "count": 8, "drawn": 8},
        {"index": 1, "start": 100, "stop": None, "count": "all", "drawn": 4}]})
    _json(res / "manifest/summary.json", {"selected": 12, "kept": 9, "dropped_total": 3,
                                          "dropped": {"deleted": 2, "not_image": 1, "banned": 0,
                                                      "duplicate": 0}})
    kept = pl.DataFrame({"id": list(range(1, 10)), "range_index": [0] * 6 + [1] * 3},
                        schema={"id": pl.Int64, "range_index": pl.Int16})
    kept.write_parquet(res / "manifest/kept.parquet")
    (res / "captions").mkdir()
    pl.DataFrame({"id": list(range(1, 9)), "caption": ["x"] * 8}).write_parquet(
        res / "captions/captions.parquet")
    (res / "images").mkdir()
    pl.DataFrame({"id": DATASET, "file": [f"files/{i}.png" for i in DATASET]}).write_parquet(
        res / "images/dataset.parquet")
    pl.DataFrame({"id": [6, 8], "reason": ["corrupt_image", "missing_file"],
                  "detail": ["", ""]}).write_parquet(res / "images/dropped.parquet")
    _buckets(res)
    plan = plan_rows()
    write_table(plan, res / "plan/plan.parquet", PLAN_SCHEMA)
    _json(res / "plan/summary.json", {"steps": STEPS, "world_size": 1, "grad_accum": 1,
                                      "images": 7, "samples": plan.height, "seed": 1})
    _json(res / "checks/counts.json", {"actual": {}, "problems": [], "config": {
        "expected": {"selected_posts": 12, "selected_per_range": [8, 4], "images": 7,
                     "buckets": 3, "steps": STEPS}, "tolerance": 0.0, "enforce": True}})
    (res / "train").mkdir()
    metrics_frame(plan).write_csv(res / "train/metrics.csv")
    for step, sha in CKPT_SHA.items():
        _json(res / f"train/checkpoints/step-{step:08d}/manifest.json",
              {"step": step, "files": {"lokr.safetensors": {"sha256": sha, "size": 1}}})
    log = root / "logs/train/train.log"
    log.parent.mkdir(parents=True)
    log.write_text("[rank 0] resumed from results/train/checkpoints/step-00000004 at plan "
                   "step index 4\n[rank 0] step 8/8: loss 0.2\n")
    return res


def _buckets(res: Path) -> None:
    (res / "buckets").mkdir()
    rows = []
    for i in DATASET:
        bw, bh = BUCKET_SIZE[BUCKET_OF[i]]
        # decoded size below the resized one = upscaled; resized beyond the bucket = cropped
        rw, rh = (bw + (8 if i in CROPPED else 0), bh)
        ow, oh = (rw // 2, rh // 2) if i in UPSCALED else (rw * 2, rh * 2)
        rows.append((i, BUCKET_OF[i], bw, bh, ow, oh, rw, rh))
    pl.DataFrame(rows, schema=["id", "bucket", "bucket_w", "bucket_h", "orig_w", "orig_h",
                               "resized_w", "resized_h"], orient="row").write_parquet(
        res / "buckets/buckets.parquet")
    counts = {b: sum(1 for i in DATASET if BUCKET_OF[i] == b) for b in BUCKET_SIZE}
    (res / "buckets/histogram.csv").write_text("bucket,width,height,count\n" + "".join(
        f"{b},{w},{h},{counts[b]}\n" for b, (w, h) in BUCKET_SIZE.items()))
