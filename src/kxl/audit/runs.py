"""Run vs run: the first checkpoint step at which two training runs differ, and the data the
steps before it saw (from the plan). Only each step's `lokr.safetensors` is read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kxl.audit.config import Tolerance
from kxl.audit.diff import diff_files
from kxl.errors import KxlError
from kxl.hashing import sha256_file

_STEP = re.compile(r"^step-(\d+)$")
MAX_LISTED_ROWS = 10000  # plan rows listed in the JSON; counts always cover the whole window


def checkpoint_steps(run: Path) -> dict[int, Path]:
    """step -> lokr file, for `run` = a checkpoints dir or a dir holding `checkpoints/`."""
    root = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    steps = {int(m.group(1)): p / "lokr.safetensors" for p in root.iterdir()
             if (m := _STEP.match(p.name)) and (p / "lokr.safetensors").is_file()}
    if not steps:
        raise KxlError(f"{run}: no step-XXXXXXXX/lokr.safetensors checkpoints found; pass a "
                       "training output dir (results/train) or its checkpoints/ dir")
    return steps


def first_divergence(a: Path, b: Path, tol: Tolerance) -> dict[str, Any]:
    """Walk the common checkpoint steps in order; stop at the first that differs."""
    sa, sb = checkpoint_steps(a), checkpoint_steps(b)
    common = sorted(set(sa) & set(sb))
    out: dict[str, Any] = {"steps_a": sorted(sa), "steps_b": sorted(sb), "common": common,
                           "last_equal": None, "first_diff": None, "diff": None}
    for step in common:
        if sha256_file(sa[step]) != sha256_file(sb[step]):  # identical bytes: no need to look
            rep = diff_files(sa[step], sb[step], None, tol)
            if not rep["passed"]:
                out["first_diff"], out["diff"] = step, rep
                return out
        out["last_equal"] = step
    return out


def plan_window(plan: Path, start: int, stop: int) -> dict[str, Any]:
    """What plan steps [start, stop) trained on: per-step counts and (a bounded list of) rows."""
    import polars as pl

    lf = pl.scan_parquet(plan).filter((pl.col("step") >= start) & (pl.col("step") < stop))
    rows = lf.sort("step", "rank", "micro", "slot").collect()
    per_step = (rows.group_by("step").agg(pl.len().alias("samples"),
                                          pl.col("post_id").n_unique().alias("unique_posts"),
                                          pl.col("bucket").n_unique().alias("buckets"))
                .sort("step"))
    listed = rows.head(MAX_LISTED_ROWS).with_columns(pl.col("sample_seed").cast(pl.String))
    return {"steps": [start, stop], "samples": rows.height,
            "unique_posts": rows["post_id"].n_unique() if rows.height else 0,
            "per_step": per_step.to_dicts(), "rows": listed.to_dicts(),
            "rows_truncated": rows.height > MAX_LISTED_ROWS}


def diff_runs(a: Path, b: Path, plan: Path | None, tol: Tolerance) -> dict[str, Any]:
    """The run-vs-run report (same summary keys as a file diff, plus `run`)."""
    run = first_divergence(a, b, tol)
    report: dict[str, Any] = {"mode": "run-vs-run", "a": str(a), "b": str(b), "base": None,
                              "tolerance": {"rtol": tol.rtol, "atol": tol.atol,
                                            "check_dtype": tol.check_dtype}}
    inner = run.pop("diff")
    if inner is not None:
        report |= {k: inner[k] for k in ("counts", "passed", "failing", "blocks", "cells",
                                          "tensors")}
        if plan is not None:
            # checkpoint step N holds the state after plan steps 0..N-1
            start = 0 if run["last_equal"] is None else run["last_equal"]
            run["data"] = plan_window(plan, start, run["first_diff"])
    else:
        report |= {"counts": {}, "passed": True, "failing": 0, "blocks": [], "cells": [],
                   "tensors": []}
    return report | {"run": run}
