"""Where the report finds each artifact, and how a missing or unreadable one is reported."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Missing:
    """Something the page cannot show: one line on stderr, a notice in its section."""

    path: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}: {self.why}"


@dataclass(frozen=True)
class RunPaths:
    """The artifacts of one run (docs/formats.md) and the training log."""

    results: Path
    posts_summary: Path
    manifest_summary: Path
    kept: Path
    captions: Path
    dataset: Path
    images_dropped: Path
    histogram: Path
    buckets: Path
    plan: Path
    plan_summary: Path
    counts: Path
    metrics: Path
    metrics_running: Path
    checkpoints: Path
    superseded: Path
    tensorboard: Path
    train_log: Path
    verify: Path
    ccip: Path
    diffs: Path
    series: Path

    @classmethod
    def under(cls, results: Path, logs: Path) -> RunPaths:
        """The standard layout: `results/<stage>/...` and `logs/train/train.log`."""
        return cls(results, **{k: (logs if k == "train_log" else results) / rel
                               for k, rel in _LAYOUT.items()})


_LAYOUT = {
    "posts_summary": "posts/summary.json",
    "manifest_summary": "manifest/summary.json",
    "kept": "manifest/kept.parquet",
    "captions": "captions/captions.parquet",
    "dataset": "images/dataset.parquet",
    "images_dropped": "images/dropped.parquet",
    "histogram": "buckets/histogram.csv",
    "buckets": "buckets/buckets.parquet",
    "plan": "plan/plan.parquet",
    "plan_summary": "plan/summary.json",
    "counts": "checks/counts.json",
    "metrics": "train/metrics.csv",
    "metrics_running": "train/metrics.running.csv",
    "checkpoints": "train/checkpoints",
    "superseded": "train/superseded",
    "tensorboard": "train/tensorboard",
    "train_log": "train/train.log",
    "verify": "audit/verify.json",
    "ccip": "eval/ccip/report.html",
    "diffs": "audit/diff",
    "series": "audit/series",
}


def read_json(path: Path) -> dict[str, Any] | Missing:
    if not path.is_file():
        return Missing(str(path), "missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Missing(str(path), f"unreadable JSON ({exc.__class__.__name__})")
    if not isinstance(data, dict):
        return Missing(str(path), "not a JSON object")
    return data


def scan(path: Path, columns: list[str]) -> pl.LazyFrame | Missing:
    """A lazy scan of `columns` of a parquet table (checked against its schema up front)."""
    if not path.is_file():
        return Missing(str(path), "missing")
    try:
        lf = pl.scan_parquet(path)
        names = lf.collect_schema().names()
    except Exception as exc:  # polars raises several types for a bad file
        return Missing(str(path), f"not a readable parquet table ({exc.__class__.__name__})")
    absent = [c for c in columns if c not in names]
    if absent:
        return Missing(str(path), f"has no column(s) {absent} (an older or other format?)")
    return lf.select(columns)


def collect(lf: pl.LazyFrame, path: Path) -> pl.DataFrame | Missing:
    """Run a lazy aggregate with the streaming engine (bounded memory on 5M-row tables)."""
    try:
        return lf.collect(engine="streaming")
    except Exception as exc:  # a truncated file fails only when its pages are read
        return Missing(str(path), f"could not be read ({exc.__class__.__name__})")
