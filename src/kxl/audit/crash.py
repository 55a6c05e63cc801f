"""Crash forensics: the data order of a run resumed the way sd-scripts 0.8.7 resumed, and what
it did to the data.

Epsilon's training collapsed between steps 13600 and 15300 and was resumed by a trainer that
"could not resume and skip the seen data" (the model card; SPEC section 2: resume restarted the
data order from batch 0, fixed only in v0.9.0). kxl's own resume continues at the exact next
micro-batch. `emulate_resume` writes the plan such a resume would have followed, as a file with
the plan's own schema, so `kxl explain-step --plan` and training read it like any plan.

Readings of "restarted the data order" (the card does not say more):
- `restart-epoch`: after resuming from the checkpoint at step k, the data loader starts the
  current epoch again from its first micro-batch, in the same order (the epoch's shuffle is
  seeded), and training stops at the planned number of steps N. The steps k..N-1 see the
  micro-batches the epoch's steps e0..e0+N-k-1 saw (e0: the epoch's first step).
- `restart-run`: the step counter restarts too, so after step k the whole plan runs again
  (N more steps, k + N in all).
Each sample keeps its plan row (post, bucket, sample seed); only its step changes.

`divergence` names the first step at which two runs' inputs differ between an equal and a
differing checkpoint (the data in their plans, or the learning rate in their metrics.csv) and
the rows that step trained on in each: `kxl diff` of two run dirs and a crash scenario's series
report it (rules/crash.smk).

`resume_damage` counts, per post, how often the original and the emulated plans show it: posts
seen twice (or more) and posts never seen, by window of the original plan's steps and by bucket.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl

from kxl.errors import KxlError

Reading = Literal["restart-epoch", "restart-run"]
READINGS: tuple[str, ...] = ("restart-epoch", "restart-run")


def emulate_resume(plan: pl.DataFrame, resume_step: int, reading: Reading) -> pl.DataFrame:
    """The plan of a run resumed at `resume_step` (the checkpoint it resumed from) under
    `reading`; rows sorted as any plan (step, rank, micro, slot)."""
    n_steps = int(plan["step"].max()) + 1 if plan.height else 0
    if reading not in READINGS:
        raise KxlError(f"crash reading {reading!r}: one of {list(READINGS)}")
    if not 0 < resume_step < n_steps:
        raise KxlError(f"crash resume_step {resume_step}: must be inside the plan's steps "
                       f"(1..{n_steps - 1})")
    before = plan.filter(pl.col("step") < resume_step)
    if reading == "restart-epoch":
        epoch = plan.filter(pl.col("step") == resume_step)["epoch"][0]
        first = int(plan.filter(pl.col("epoch") == epoch)["step"].min())
        again = plan.filter(pl.col("step") >= first).with_columns(
            (pl.col("step") - first + resume_step).cast(pl.Int32).alias("step"))
        again = again.filter(pl.col("step") < n_steps)
    else:
        again = plan.with_columns((pl.col("step") + resume_step).cast(pl.Int32).alias("step"))
    return pl.concat([before, again]).sort(["step", "rank", "micro", "slot"])


def resume_damage(plan: pl.DataFrame, emulated: pl.DataFrame, window: int) -> dict[str, Any]:
    """What the emulated resume did to the data, against the original plan.

    Every post is placed by its first step in the original plan: windows of `window` steps of
    that step, and its bucket. `twice`: posts the emulated plan shows more often than the
    original (`extra_views` in all); `fewer`: less often (`missed_views`); `never`: posts the
    original shows and the emulated one does not. With one epoch (Epsilon's) a post is planned
    once, so `twice` and `never` are exact."""
    if window < 1:
        raise KxlError(f"crash window {window}: must be >= 1 step")
    orig = plan.group_by("post_id").agg(
        pl.len().cast(pl.Int64).alias("planned"), pl.col("step").min().alias("first_step"),
        pl.col("bucket").first())
    seen = emulated.group_by("post_id").agg(pl.len().cast(pl.Int64).alias("seen"))
    per_post = orig.join(seen, on="post_id", how="left").with_columns(
        pl.col("seen").fill_null(0),
        (pl.col("first_step") // window * window).alias("window"))
    flags = per_post.with_columns(
        (pl.col("seen") > pl.col("planned")).alias("twice"),
        (pl.col("seen") == 0).alias("never"),
        (pl.col("seen") < pl.col("planned")).alias("fewer"),
        (pl.col("seen") - pl.col("planned")).clip(lower_bound=0).alias("extra_views"),
        (pl.col("planned") - pl.col("seen")).clip(lower_bound=0).alias("missed_views"))

    def table(by: str) -> list[dict[str, Any]]:
        return (flags.group_by(by).agg(pl.len().alias("posts"), pl.col("twice").sum(),
                                       pl.col("fewer").sum(), pl.col("never").sum(),
                                       pl.col("extra_views").sum(), pl.col("missed_views").sum())
                .sort(by).to_dicts())

    return {
        "posts": per_post.height,
        "samples": {"planned": plan.height, "emulated": emulated.height},
        "steps": {"planned": int(plan["step"].max()) + 1,
                  "emulated": int(emulated["step"].max()) + 1},
        "twice": int(flags["twice"].sum()),
        "fewer": int(flags["fewer"].sum()),
        "never": int(flags["never"].sum()),
        "extra_views": int(flags["extra_views"].sum()),
        "missed_views": int(flags["missed_views"].sum()),
        "first_divergent_step": first_divergent_step(plan, emulated),
        "window": window,
        "by_window": table("window"),
        "by_bucket": table("bucket"),
    }


def first_divergent_step(a: pl.DataFrame, b: pl.DataFrame) -> int | None:
    """The first step whose rows (rank, micro, slot, post) differ between two plans."""
    cols = ["step", "rank", "micro", "slot", "post_id"]
    joined = a.select(cols).join(b.select(cols), on=["step", "rank", "micro", "slot"],
                                 how="full", suffix="_b", coalesce=True)
    diff = joined.filter(pl.col("post_id").ne_missing(pl.col("post_id_b")))
    return int(diff["step"].min()) if diff.height else None


ROW_COLUMNS = ["step", "rank", "micro", "slot", "post_id", "bucket", "sample_seed"]
LR_COLUMNS = ["lr_text_encoder", "lr_unet"]


def first_lr_step(a: pl.DataFrame, b: pl.DataFrame) -> int | None:
    """The first step both metrics tables log whose learning rates differ."""
    joined = a.select("step", *LR_COLUMNS).join(b.select("step", *LR_COLUMNS), on="step",
                                                suffix="_b")
    diff = joined.filter(pl.any_horizontal(pl.col(c) != pl.col(f"{c}_b") for c in LR_COLUMNS))
    return int(diff["step"].min()) if diff.height else None


def divergence(plan_a: pl.DataFrame, plan_b: pl.DataFrame, start: int, stop: int,
               lr_a: pl.DataFrame | None = None, lr_b: pl.DataFrame | None = None
               ) -> dict[str, Any]:
    """Between checkpoint `start` (equal in both runs: the state after steps < start) and
    checkpoint `stop` (different), the first step in [start, stop) whose inputs differ: its
    plan rows (`data_step`) or, with both runs' metrics, its learning rates (`lr_step`). With
    the same state and inputs a step computes the same, so that step is where the runs diverge;
    `rows` lists what it trained on in each plan, `lr` its learning rates."""
    window = (pl.col("step") >= start) & (pl.col("step") < stop)
    a, b = plan_a.filter(window), plan_b.filter(window)
    data_step = first_divergent_step(a, b)
    lr_step = None
    if lr_a is not None and lr_b is not None:
        lr_step = first_lr_step(lr_a.filter(window), lr_b.filter(window))
    found = [s for s in (data_step, lr_step) if s is not None]
    step = min(found) if found else None
    out: dict[str, Any] = {"window": [start, stop], "step": step, "data_step": data_step,
                           "lr_step": lr_step, "rows": {}, "lr": {}}
    if step is None:
        return out
    for side, plan, lr in (("a", a, lr_a), ("b", b, lr_b)):
        rows = plan.filter(pl.col("step") == step).sort("rank", "micro", "slot")
        out["rows"][side] = rows.select(ROW_COLUMNS).with_columns(
            pl.col("sample_seed").cast(pl.String)).to_dicts()
        at = lr.filter(pl.col("step") == step) if lr is not None else pl.DataFrame()
        out["lr"][side] = at.select(LR_COLUMNS).row(0, named=True) if at.height else None
    return out
