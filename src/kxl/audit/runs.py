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


def read_lrs(metrics: Path) -> Any:
    """The learning rates a run logged per step in `metrics` (metrics.csv; the last row of a
    step a resume logged again), or None when there is no such file."""
    import polars as pl

    from kxl.audit.crash import LR_COLUMNS

    if not metrics.is_file():
        return None
    table = pl.read_csv(metrics, columns=["step", *LR_COLUMNS])
    return table.unique("step", keep="last").sort("step")


def plan_rows(plan: Path, start: int, stop: int) -> Any:
    """The plan's rows of steps [start, stop), read without loading the rest."""
    import polars as pl

    return pl.scan_parquet(plan).filter((pl.col("step") >= start) & (pl.col("step") < stop)
                                        ).collect()


def equal_window(steps: list[int], a: list[str], b: list[str]) -> tuple[int, int] | None:
    """(last step whose two files are byte-identical (0 if none), first step whose differ) over
    two series' files in step order; None when every pair is identical."""
    last = 0
    for step, fa, fb in zip(steps, a, b, strict=True):
        if sha256_file(fa) != sha256_file(fb):
            return last, step
        last = step
    return None


def named_divergence(plans: dict[str, Path], metrics: dict[str, Path], start: int,
                     stop: int) -> dict[str, Any]:
    """kxl.audit.crash.divergence over the files of two runs (plans, metrics.csv)."""
    from kxl.audit.crash import divergence

    return divergence(plan_rows(plans["a"], start, stop), plan_rows(plans["b"], start, stop),
                      start, stop, read_lrs(metrics["a"]), read_lrs(metrics["b"]))


def diff_runs(a: Path, b: Path, plan: Path | None, tol: Tolerance,
              plan_b: Path | None = None) -> dict[str, Any]:
    """The run-vs-run report (same summary keys as a file diff, plus `run`). With each run's
    plan (`plan`, `plan_b`: a crash scenario's is its own), `run.divergence` names the first
    step between the last equal and the first differing checkpoint whose data or learning rate
    differ, and what it trained on in each (kxl.audit.crash.divergence)."""
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
        if plan_b is not None:
            root = {k: r.parent if r.name == "checkpoints" else r for k, r in (("a", a), ("b", b))}
            run["divergence"] = named_divergence(
                {"a": plan, "b": plan_b}, {k: r / "metrics.csv" for k, r in root.items()},
                start, run["first_diff"])
    else:
        report |= {"counts": {}, "passed": True, "failing": 0, "blocks": [], "cells": [],
                   "tensors": []}
    return report | {"run": run}


def series_divergence(steps: list[int], paths: dict[str, list[str]],
                      sources: dict[str, dict[str, str]]) -> dict[str, Any] | None:
    """A crash series' divergence: between its last byte-identical and first differing step
    files, named from the two runs' plans and metrics (kxl.audit.config.crash_sources); None
    when the two series never differ."""
    window = equal_window(steps, paths["a"], paths["b"])
    if window is None:
        return None
    as_paths = {kind: {k: Path(v) for k, v in files.items()} for kind, files in sources.items()}
    return named_divergence(as_paths["plans"], as_paths["metrics"], *window)
