"""The data-order plan: a pure, vectorised function of (bucket table, plan config, run seed).

Per epoch (sd-scripts v0.8.7 order, with kxl's own documented RNG): each bucket's images are
shuffled and cut into micro-batches of `batch_size` (the last one short under `keep`), then all
micro-batches of all buckets are shuffled together; a micro-batch never mixes buckets. The epoch's
sequence of micro-batches j = 0, 1, ... is cut into optimizer steps of K = world_size * grad_accum
micro-batches: micro-batch j goes to step j // K, and inside its step (i = j % K) to rank i % W as
that rank's micro-batch i // W - the order in which accelerate shards a batch_size=1 DataLoader.
The sequence never depends on W or A, so every (W, A) with the same W*A sees the same posts in
each step. Each epoch starts a new step (its last step may hold fewer than K micro-batches).
Steps count from 0 across epochs; resuming after k completed steps reads rows with step >= k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.plan.config import PlanConfig
from kxl.plan.seeds import epoch_rng, sample_seeds

PLAN_SCHEMA = {
    "step": pl.Int32, "rank": pl.Int16, "micro": pl.Int16, "slot": pl.Int16, "epoch": pl.Int16,
    "post_id": pl.Int64, "bucket": pl.Int32, "sample_seed": pl.UInt64,
}


@dataclass(frozen=True)
class EpochOrder:
    """Rows (indices into the bucket table) in micro-batch order, with micro-batch and slot."""

    rows: np.ndarray
    micro: np.ndarray
    slot: np.ndarray
    n_micro: int
    short: int
    dropped: int
    filled: int


def _compact(key: np.ndarray, size: int) -> np.ndarray:
    """Row order that sorts by `key` (unique ints in [0, size)): a scatter, O(n) not O(n log n)."""
    where = np.full(size, -1, dtype=np.int64)
    where[key] = np.arange(len(key))
    return where[where >= 0]


def _fill_rows(order: np.ndarray, starts: np.ndarray, counts: np.ndarray, need: np.ndarray):
    """Extra (row, position, group) that top up each bucket's short batch from its own start."""
    grp = np.repeat(np.arange(len(counts)), need)
    k = np.arange(need.sum()) - np.repeat(np.cumsum(need) - need, need)
    pos = counts[grp] + k
    return order[starts[grp] + pos % counts[grp]], pos, grp


def epoch_order(bucket: np.ndarray, batch_size: int, partial: str,
                rng: np.random.Generator) -> EpochOrder:
    """Shuffle within buckets, cut into micro-batches, shuffle the micro-batches (module doc)."""
    n, b = len(bucket), batch_size
    perm = rng.permutation(n)
    order = perm[np.argsort(bucket[perm], kind="stable")]  # grouped by bucket, random inside
    _, starts, counts = np.unique(bucket[order], return_index=True, return_counts=True)
    grp = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(n) - starts[grp]
    rem = counts % b
    n_batches = -(-counts // b)
    dropped = filled = 0
    if partial == "drop":
        keep = pos < (counts - rem)[grp]
        dropped = int(n - keep.sum())
        order, pos, grp, n_batches = order[keep], pos[keep], grp[keep], counts // b
    elif partial == "fill":
        extra, epos, egrp = _fill_rows(order, starts, counts, np.where(rem > 0, b - rem, 0))
        filled = len(extra)
        order, pos = np.concatenate([order, extra]), np.concatenate([pos, epos])
        grp = np.concatenate([grp, egrp])
    total = int(n_batches.sum())
    batch = (np.cumsum(n_batches) - n_batches)[grp] + pos // b
    seq_of_batch = np.empty(total, dtype=np.int64)
    seq_of_batch[rng.permutation(total)] = np.arange(total)
    micro, slot = seq_of_batch[batch], pos % b
    sel = _compact(micro * b + slot, total * b)
    short = int((rem > 0).sum()) if partial == "keep" else 0
    return EpochOrder(order[sel], micro[sel], slot[sel], total, short, dropped, filled)


def _epoch_frame(eo: EpochOrder, cfg: PlanConfig, epoch: int, step0: int, ids: np.ndarray,
                 bucket: np.ndarray, run_seed: int) -> pl.DataFrame:
    w, a, b = cfg.world_size, cfg.grad_accum, cfg.batch_size
    k = w * a
    step, i = eo.micro // k, eo.micro % k
    rank, micro = i % w, i // w
    n_steps = -(-eo.n_micro // k)
    sel = _compact(((step * w + rank) * a + micro) * b + eo.slot, n_steps * k * b)
    post = ids[eo.rows[sel]]
    return pl.DataFrame({
        "step": step[sel] + step0, "rank": rank[sel], "micro": micro[sel], "slot": eo.slot[sel],
        "epoch": np.full(len(sel), epoch), "post_id": post, "bucket": bucket[eo.rows[sel]],
        "sample_seed": sample_seeds(run_seed, epoch, post),
    }).cast(PLAN_SCHEMA)


def _check_input(ids: np.ndarray, bucket: np.ndarray) -> None:
    if len(ids) == 0:
        raise KxlError("buckets/buckets.parquet: no images; run assign-buckets on a non-empty "
                       "dataset")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise KxlError(f"buckets/buckets.parquet: id {uniq[counts > 1][0]} appears more than "
                       "once; re-run assign-buckets")


def build_plan(ids: np.ndarray, bucket: np.ndarray, cfg: PlanConfig,
               run_seed: int) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The plan table (sorted by step, rank, micro, slot) and its summary."""
    ids, bucket = np.asarray(ids, dtype=np.int64), np.asarray(bucket, dtype=np.int64)
    _check_input(ids, bucket)
    k = cfg.world_size * cfg.grad_accum
    frames, per_epoch, step0, epoch = [], [], 0, 0
    while (epoch < cfg.epochs) if cfg.max_steps is None else (step0 < cfg.max_steps):
        eo = epoch_order(bucket, cfg.batch_size, cfg.partial_batch, epoch_rng(run_seed, epoch))
        if eo.n_micro == 0:
            raise KxlError(f"config plan: partial_batch=drop with batch_size {cfg.batch_size} "
                           "leaves no micro-batch; lower batch_size or use keep/fill")
        frames.append(_epoch_frame(eo, cfg, epoch, step0, ids, bucket, run_seed))
        n_steps = -(-eo.n_micro // k)
        per_epoch.append({"epoch": epoch, "micro_batches": eo.n_micro, "steps": n_steps,
                          "short_micro_batches": eo.short, "dropped_images": eo.dropped,
                          "filled_slots": eo.filled})
        step0, epoch = step0 + n_steps, epoch + 1
    plan = pl.concat(frames)
    if cfg.max_steps is not None:
        plan, step0 = plan.filter(pl.col("step") < cfg.max_steps), cfg.max_steps
    return plan, _summary(plan, cfg, run_seed, len(ids), step0, per_epoch)


def _summary(plan: pl.DataFrame, cfg: PlanConfig, run_seed: int, images: int, steps: int,
             per_epoch: list[dict[str, int]]) -> dict[str, Any]:
    micro = int((plan["slot"] == 0).sum())  # every micro-batch has exactly one slot 0
    return {
        "steps": steps, "world_size": cfg.world_size, "grad_accum": cfg.grad_accum,
        "batch_size": cfg.batch_size, "images": images, "micro_batches": micro,
        "samples": plan.height, "epochs": len(per_epoch), "partial_batch": cfg.partial_batch,
        "seed": run_seed, "per_epoch": per_epoch,
        "sample_seed": "splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ post_id) mod 2**64",
    }
