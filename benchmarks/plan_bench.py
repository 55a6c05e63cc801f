"""Stage 7 plan builder at full scale vs a per-image Python loop of the same algorithm.

Input: 5,210,319 synthetic image sizes with a danbooru-like aspect mix (portrait-heavy), bucketed
with the Epsilon config (1024/256/4096/64) by kxl's own assign(); plan B=4, A=16, W=4, 1 epoch.
The loop baseline makes the identical plan (tests/plan checks that) but is timed on a subset and
extrapolated linearly to the full size (it is O(n) apart from one sort); its row says so.
`ratio_vs_baseline` = seconds / baseline seconds (lower is better).
"""

from __future__ import annotations

import json

import numpy as np

from benchmarks.util import run_measured
from kxl.plan.config import PlanConfig
from kxl.plan.seeds import epoch_rng

FULL = 5_210_319
EPSILON = {"batch_size": 4, "grad_accum": 16, "world_size": 4}
_MASK = (1 << 64) - 1


def danbooru_like_sizes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(width, height): ~50% portrait near 0.7, 20% square, 25% landscape near 1.4, 5% extreme."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(4, size=n, p=[0.5, 0.2, 0.25, 0.05])
    centre = np.array([np.log(0.71), 0.0, np.log(1.41), 0.0])[kind]
    spread = np.array([0.08, 0.02, 0.08, 0.9])[kind]
    aspect = np.exp(rng.normal(centre, spread))
    long_side = rng.integers(700, 4000, size=n)
    w = np.where(aspect >= 1, long_side, long_side * aspect)
    h = np.where(aspect >= 1, long_side / aspect, long_side)
    return np.maximum(w, 1).astype(np.int64), np.maximum(h, 1).astype(np.int64)


def epsilon_buckets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(post ids, bucket) for n synthetic images bucketed like the Epsilon run."""
    from kxl.buckets.assign import assign

    w, h = danbooru_like_sizes(n, seed)
    ids = np.sort(np.random.default_rng(seed + 1).choice(7_350_000, n, replace=False))
    a = assign(ids, w, h, resolution=1024, min_size=256, max_size=4096, step=64,
               no_upscale=False, crop_convention="kohya-0.8.7")
    return ids, a.bucket


def _mix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def loop_plan(ids: np.ndarray, bucket: np.ndarray, cfg: PlanConfig, run_seed: int) -> list[tuple]:
    """The plan algorithm written as a plain per-image loop (keep/drop/fill, `epochs` only).

    Rows are (step, rank, micro, slot, epoch, post_id, bucket, sample_seed), sorted.
    """
    b, w, k = cfg.batch_size, cfg.world_size, cfg.world_size * cfg.grad_accum
    out: list[tuple] = []
    step0 = 0
    for epoch in range(cfg.epochs):
        rng = epoch_rng(run_seed, epoch)
        groups: dict[int, list[int]] = {}
        for r in rng.permutation(len(ids)).tolist():
            groups.setdefault(int(bucket[r]), []).append(r)
        batches = []
        for bk in sorted(groups):
            rows = groups[bk]
            for s in range(0, len(rows), b):
                batch = rows[s : s + b]
                if len(batch) < b and cfg.partial_batch == "drop":
                    continue
                if len(batch) < b and cfg.partial_batch == "fill":
                    top_up = range(len(rows), len(rows) + b - len(batch))
                    batch = batch + [rows[i % len(rows)] for i in top_up]
                batches.append(batch)
        head = _mix(_mix(run_seed) ^ epoch)
        for j, bi in enumerate(rng.permutation(len(batches)).tolist()):
            i = j % k
            for slot, r in enumerate(batches[bi]):
                pid = int(ids[r])
                out.append((step0 + j // k, i % w, i // w, slot, epoch, pid, int(bucket[r]),
                            _mix(head ^ pid)))
        step0 += -(-len(batches) // k)
    out.sort()
    return out


_KXL = """
import json, time, tempfile, os
from benchmarks.plan_bench import epsilon_buckets, EPSILON
from kxl.plan.build import build_plan, PLAN_SCHEMA
from kxl.plan.config import PlanConfig
from kxl.tables import write_table
ids, bucket = epsilon_buckets({n})
t = time.perf_counter()
plan, summary = build_plan(ids, bucket, PlanConfig(**EPSILON), 1337)
build = time.perf_counter() - t
with tempfile.TemporaryDirectory() as d:
    write_table(plan, os.path.join(d, "plan.parquet"), PLAN_SCHEMA)
print(json.dumps({{"build": build, "build_write": time.perf_counter() - t,
                  "steps": summary["steps"], "micro": summary["micro_batches"]}}))
"""

_LOOP = """
import json, time
from benchmarks.plan_bench import epsilon_buckets, loop_plan, EPSILON
from kxl.plan.config import PlanConfig
ids, bucket = epsilon_buckets({n})
t = time.perf_counter()
loop_plan(ids, bucket, PlanConfig(**EPSILON), 1337)
print(json.dumps({{"build": time.perf_counter() - t}}))
"""


def run(quick: bool) -> list[dict]:
    n = 200_000 if quick else FULL
    sub = 20_000 if quick else 400_000
    env = {"OMP_NUM_THREADS": "1"}
    kxl = run_measured(_KXL.format(n=n), env)
    loop = run_measured(_LOOP.format(n=sub), env)
    base = loop["build"] * n / sub
    return [
        {"name": f"plan loop baseline ({n:,} images)", "seconds": base,
         "peak_rss_mb": None, "ratio_vs_baseline": 1.0,
         "note": f"timed on {sub:,} images ({loop['build']:.2f} s), extrapolated x{n / sub:.1f}"},
        {"name": f"plan kxl build ({n:,} images)", "seconds": kxl["build"],
         "peak_rss_mb": kxl["peak_rss_mb"], "ratio_vs_baseline": kxl["build"] / base,
         "note": f"B4 A16 W4: {kxl['steps']} steps, {kxl['micro']} micro-batches"},
        {"name": f"plan kxl build+write parquet ({n:,} images)", "seconds": kxl["build_write"],
         "peak_rss_mb": kxl["peak_rss_mb"], "ratio_vs_baseline": kxl["build_write"] / base,
         "note": "peak RSS includes making the synthetic input"},
    ]


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
