"""Training: the per-step metrics, checkpoints and resumes, and whether they are this run's.

metrics.csv (or metrics.running.csv while training runs) has one row per optimizer step with
`rows_hash`, the hash of the plan rows that step trained on (kxl.plan.read.rows_hash). A few
steps spread over the run are re-hashed from plan.parquet (a filtered scan, a few thousand
rows): a mismatch means the metrics come from another run (another plan, data or seed), and
the page says so above the plots instead of presenting them as this run's.

Rows also carry `wall_time` (unix seconds when written; files from before the column lack it):
a resume at step N is shown with the wall-clock gap between rows N-1 and N, the downtime
between the crash and the resumed run's first step (with the restart and the steps redone since
the checkpoint, whose rows the resumed run wrote again).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from kxl.plan.read import ROWS_HASH_COLUMNS, rows_hash
from kxl.report.inputs import Missing, RunPaths, read_json
from kxl.report.tfevents import sessions

METRICS_SCHEMA = {
    "step": pl.Int64, "loss": pl.Float64, "lr_text_encoder": pl.Float64, "lr_unet": pl.Float64,
    "grad_norm": pl.Float64, "scaler_scale": pl.Float64, "images_per_s": pl.Float64,
    "rows_hash": pl.String,
}
WALL_TIME = "wall_time"  # optional: metrics written before the column have none
CHECKED_STEPS = 9  # steps re-hashed from the plan, spread evenly from the first to the last
MAX_POINTS = 1500  # per plotted series: 20,354 steps become bins of 14 (min, mean, max kept)


@dataclass(frozen=True)
class Checkpoint:
    step: int
    lokr_sha256: str | None
    folder: str
    superseded: bool


@dataclass(frozen=True)
class Resume:
    step: int
    source: str  # "tensorboard" | "train log"
    detail: str
    down_s: float | None = None  # wall time between rows step-1 and step, where both have it


@dataclass(frozen=True)
class Training:
    metrics: pl.DataFrame  # the rows as read (sorted by step, one row per step)
    source: str  # the file read
    plan_steps: int | None
    samples_per_step: float | None
    checkpoints: list[Checkpoint]
    resumes: list[Resume]
    problems: list[str]  # metrics from another run, steps past the plan, gaps
    notes: list[str] = field(default_factory=list)  # skipped checkpoints etc. from the log
    missing: list[Missing] = field(default_factory=list)


def read_metrics(path: Path) -> pl.DataFrame | Missing:
    """The metrics rows; a half-written last line of a running file is left out."""
    if not path.is_file():
        return Missing(str(path), "missing")
    try:
        df = pl.read_csv(path, schema_overrides={**METRICS_SCHEMA, WALL_TIME: pl.Float64},
                         ignore_errors=True, truncate_ragged_lines=True)
    except Exception as exc:  # polars raises several types for a malformed CSV
        return Missing(str(path), f"not a readable metrics CSV ({exc.__class__.__name__})")
    absent = [c for c in METRICS_SCHEMA if c not in df.columns]
    if absent:
        return Missing(str(path), f"has no column(s) {absent}; not a kxl metrics file")
    if WALL_TIME not in df.columns:
        df = df.with_columns(pl.lit(None, pl.Float64).alias(WALL_TIME))
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in METRICS_SCHEMA)
    return (df.select(*METRICS_SCHEMA, WALL_TIME)
            .filter(complete & (pl.col("rows_hash").str.len_chars() == 16))
            .unique("step", keep="last").sort("step"))


def smoothed(loss: pl.Series) -> pl.Series:
    """Exponential moving average over ~1% of the run (at least 10 steps), bias-corrected."""
    return loss.ewm_mean(span=max(10, len(loss) // 100), adjust=True)


def thin(df: pl.DataFrame, columns: list[str], max_points: int = MAX_POINTS) -> pl.DataFrame:
    """At most `max_points` rows: consecutive steps binned, each column's mean, min and max."""
    k = max(1, math.ceil(df.height / max_points))
    aggs = [pl.col("step").mean().alias("step")]
    for c in columns:
        aggs += [pl.col(c).mean().alias(c), pl.col(c).min().alias(f"{c}_min"),
                 pl.col(c).max().alias(f"{c}_max")]
    return (df.with_row_index("i").group_by(pl.col("i") // k, maintain_order=True)
            .agg(aggs).drop("i"))


def checked_steps(steps: np.ndarray, n: int = CHECKED_STEPS) -> list[int]:
    if steps.size == 0:
        return []
    picks = np.unique(np.linspace(0, steps.size - 1, n).round().astype(int))
    return [int(s) for s in steps[picks]]


def plan_hashes(plan: Path, steps: list[int]) -> dict[int, str]:
    """rows_hash of the plan's rows for each of `steps` (one filtered scan of the plan)."""
    rows = (pl.scan_parquet(plan).filter(pl.col("step").is_in(steps))
            .select("step", *ROWS_HASH_COLUMNS).collect(engine="streaming")
            .sort("step", "rank", "micro", "slot"))
    return {int(s[0]): rows_hash(g) for s, g in rows.group_by("step", maintain_order=True)}


def run_problems(metrics: pl.DataFrame, source: str, plan_steps: int | None,
                 expected: dict[int, str]) -> list[str]:
    """Why these metrics are not (all) this run's: hashes, steps past the plan, gaps."""
    out = []
    got = dict(zip(metrics["step"].to_list(), metrics["rows_hash"].to_list(), strict=True))
    wrong = [(s, got[s], h) for s, h in sorted(expected.items()) if s in got and got[s] != h]
    if wrong:
        s, a, b = wrong[0]
        out.append(f"{source}: from another run: step {s} trained on rows hashed {a}, the plan "
                   f"has {b} there ({len(wrong)} of {len(expected)} checked steps differ)")
    if plan_steps is not None and metrics.height and int(metrics["step"].max()) >= plan_steps:
        out.append(f"{source}: has steps up to {int(metrics['step'].max())}, the plan has "
                   f"{plan_steps} (steps 0-{plan_steps - 1}): from another run")
    if metrics.height and (gaps := int(metrics["step"].max()) + 1 - metrics.height):
        out.append(f"{source}: {gaps} step(s) between 0 and {int(metrics['step'].max())} have "
                   "no row")
    return out


def with_downtime(metrics: pl.DataFrame, resumes: list[Resume]) -> list[Resume]:
    """Each resume with the wall-clock seconds from row step-1 to row step, where both rows
    carry a wall time (none for a restart at step 0, or rows from before the column)."""
    at = dict(zip(metrics["step"].to_list(), metrics[WALL_TIME].to_list(), strict=True))
    out = []
    for r in resumes:
        before, after = at.get(r.step - 1), at.get(r.step)
        down = after - before if before is not None and after is not None else None
        out.append(replace(r, down_s=down))
    return out


def list_checkpoints(checkpoints: Path, superseded: Path) -> list[Checkpoint]:
    """Checkpoints by their own manifest.json (step, sha256 of lokr.safetensors)."""
    found = [(m, False) for m in checkpoints.glob("step-*/manifest.json")]
    found += [(m, True) for m in superseded.glob("*/step-*/manifest.json")]
    out = []
    for man, old in found:
        try:
            data = json.loads(man.read_text())
            step = int(data["step"])
            sha = (data.get("files") or {}).get("lokr.safetensors", {}).get("sha256")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # kxl verify names unreadable manifests; the provenance section shows it
        out.append(Checkpoint(step, sha, str(man.parent), old))
    return sorted(out, key=lambda c: (c.step, c.superseded))


_RESUMED = re.compile(r"resumed from (\S+) at plan step index (\d+)")
_MOVED = re.compile(r"(\S+): (.*); not this run's checkpoint, moved the checkpoints to (\S+)")
_SKIPPED = re.compile(r"skipping checkpoint: (.*)")


def log_events(text: str) -> tuple[list[Resume], list[str]]:
    """Resumes and checkpoint notes (skipped, set aside) from the training log's lines."""
    resumes, notes = [], []
    for m in _RESUMED.finditer(text):
        resumes.append(Resume(int(m[2]), "train log", f"resumed from {m[1]}"))
    for m in _MOVED.finditer(text):
        notes.append(f"{m[1]} set aside ({m[2]}): moved to {m[3]}, training started at step 0")
    notes += [f"checkpoint skipped: {m[1]}" for m in _SKIPPED.finditer(text)]
    return resumes, notes


def resumes_and_notes(tensorboard: Path, train_log: Path) -> tuple[list[Resume], list[str]]:
    """Every session after the first (event files) plus the log's resume; one per step."""
    found, notes = sessions(tensorboard)
    out = {}
    for i, s in enumerate(found):
        if i == 0 and s.start_step == 0:
            continue  # the run's first session
        what = "restarted at step 0" if s.start_step == 0 else "resumed"
        gap = (f", {(s.wall_time - found[i - 1].wall_time) / 3600:.2f} h after session {i} "
               "started" if i else "")
        out[s.start_step] = Resume(s.start_step, "tensorboard",
                                   f"{what}: session {i + 1} ({s.file}){gap}")
    if train_log.is_file():
        log_resumes, log_notes = log_events(train_log.read_text(errors="replace"))
        notes += log_notes
        for r in log_resumes:
            out.setdefault(r.step, r)
    return sorted(out.values(), key=lambda r: r.step), notes


def read_training(paths: RunPaths, metrics_path: Path,
                  check_plan: bool = True) -> Training | Missing:
    """Everything the training plots need; the plan is read only for the sampled steps."""
    metrics = read_metrics(metrics_path)
    if isinstance(metrics, Missing):
        return metrics
    missing: list[Missing] = []
    summary = read_json(paths.plan_summary)
    plan_steps = spp = None
    if isinstance(summary, Missing):
        missing.append(summary)
    else:
        plan_steps = int(summary["steps"])
        spp = int(summary["samples"]) / max(plan_steps, 1)
    expected: dict[int, str] = {}
    if check_plan and paths.plan.is_file():
        try:
            expected = plan_hashes(paths.plan, checked_steps(metrics["step"].to_numpy()))
        except Exception as exc:  # polars raises several types for a bad file
            missing.append(Missing(str(paths.plan), f"cannot check the metrics against it "
                                   f"({exc.__class__.__name__})"))
    elif check_plan:
        missing.append(Missing(str(paths.plan), "missing: the metrics cannot be checked "
                               "against the plan"))
    resumes, notes = resumes_and_notes(paths.tensorboard, paths.train_log)
    return Training(metrics, str(metrics_path), plan_steps, spp,
                    list_checkpoints(paths.checkpoints, paths.superseded),
                    with_downtime(metrics, resumes),
                    run_problems(metrics, str(metrics_path), plan_steps, expected), notes,
                    missing)
