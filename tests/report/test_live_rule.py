"""Rule live_report (rules/report.smk) in a copy of the checkout: the documented command
redraws results/report/live.html on every call from metrics.running.csv, and asks for nothing
of training's, so it never (re)runs training."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline_run import Workflow, copy_checkout
from run_fixtures import make_run, metrics_frame, plan_rows

LIVE = ("--force", "results/report/live.html")  # README: snakemake --cores 1 --force ...


def test_live_report_redraws_on_each_call_and_never_trains(tmp_path: Path) -> None:
    wf = Workflow(copy_checkout(tmp_path))
    dry = wf.snakemake(*LIVE, "-n")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout + dry.stderr, re.M))
    assert jobs == {"live_report": "1", "total": "1"}  # not train, not anything before it

    make_run(wf.root)  # a run whose training has not logged a step: no metrics.running.csv
    first = wf.snakemake(*LIVE)
    said = [ln for ln in (first.stdout + first.stderr).splitlines() if "metrics" in ln]
    assert len(said) == 1 and said[0].endswith(
        " no training metrics: results/train/metrics.running.csv: does not exist yet (training "
        "has not started or not finished its first step) -> results/report/live.html"), said
    page = (wf.root / "results/report/live.html").read_text()
    assert "results/train/metrics.running.csv: does not exist yet" in page

    # five steps logged: the same command draws them (a page Snakemake holds up to date)
    (wf.root / "results/train/metrics.running.csv").write_text(
        metrics_frame(plan_rows()).head(5).write_csv())
    second = wf.snakemake(*LIVE)
    assert "5 step(s) logged of 8 in the plan (62.5%)" in second.stdout + second.stderr
    page = (wf.root / "results/report/live.html").read_text()
    assert re.search(r'data-series="loss" data-n="5"', page)
    assert not (wf.root / "results/epsilon-lokr.safetensors").exists()
