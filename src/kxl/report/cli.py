"""CLI of the run report: `kxl report` (the page) and `kxl report --watch` (live training)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # polars loads only when the command runs
    from kxl.report.inputs import RunPaths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the run report (data funnel, buckets, training, "
                       "provenance) as one self-contained HTML page; --watch: live training")
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument("--logs", default="logs", help="the run's logs folder (train/train.log)")
    p.add_argument("--out", help="the page (default results/report/run.html, or "
                   "results/report/live.html with --watch)")
    p.add_argument("--counts-json", help="the config `counts` section (expected counts; "
                   "default: the one in checks/counts.json)")
    p.add_argument("--watch", action="store_true", help="redraw the training plots from "
                   "train/metrics.running.csv every --every seconds until interrupted")
    p.add_argument("--every", type=int, default=60, help="seconds between redraws (--watch)")
    p.add_argument("--once", action="store_true", help="with --watch: draw once and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kxl.report.inputs import RunPaths

    paths = RunPaths.under(Path(args.results), Path(args.logs))
    if args.watch:
        out = Path(args.out or paths.results / "report" / "live.html")
        return _watch(paths, out, max(args.every, 1), args.once)
    return _full(paths, Path(args.out or paths.results / "report" / "run.html"),
                 args.counts_json)


def _full(paths: RunPaths, out: Path, counts_json: str | None) -> int:
    from kxl.atomic import write_text
    from kxl.checks.counts import CountsConfig
    from kxl.config import section_from_json, to_dict
    from kxl.provenance import record
    from kxl.report.build import build_report
    counts = section_from_json(CountsConfig, counts_json, "counts") if counts_json else None
    rep = build_report(paths, out, counts)
    for line in rep.problems:
        print(f"kxl report: {line}", file=sys.stderr)
    write_text(out, rep.html)
    inputs = [p for p in (paths.posts_summary, paths.manifest_summary, paths.kept,
                          paths.captions, paths.dataset, paths.images_dropped, paths.histogram,
                          paths.buckets, paths.plan, paths.plan_summary, paths.counts,
                          paths.metrics, paths.verify) if p.is_file()]
    record("report", [out], inputs, {"counts": to_dict(counts) if counts else None})
    print(f"kxl report: wrote {out} ({len(rep.problems)} problem(s) named on the page)")
    return 0


def _watch(paths: RunPaths, out: Path, every: int, once: bool) -> int:
    import time

    from kxl.atomic import write_text
    from kxl.report.build import build_live
    from kxl.report.inputs import Missing
    from kxl.report.page import summary_text

    try:
        while True:
            rep, training = build_live(paths, every, time.strftime("%Y-%m-%d %H:%M:%S"))
            write_text(out, rep.html)
            if isinstance(training, Missing):  # the one line below says it; the page too
                state = f"no training metrics: {training}"
            else:
                for line in rep.problems:
                    print(f"kxl report: {line}", file=sys.stderr)
                state = summary_text(training)
            print(f"{time.strftime('%H:%M:%S')} {state} -> {out}", flush=True)
            if once:
                return 0
            time.sleep(every)
    except KeyboardInterrupt:
        return 0
