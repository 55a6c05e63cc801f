"""The run report on a small hand-made run (tests/report/conftest.py): every number below is
counted from the conftest's description, not by the code under test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from run_fixtures import CKPT_SHA, LOSS, STEPS, metrics_frame, plan_rows

from kxl.checks.counts import CountsConfig, ExpectedCounts
from kxl.report.buckets import Buckets, read_buckets
from kxl.report.funnel import read_funnel
from kxl.report.inputs import RunPaths
from kxl.report.provenance import read_provenance
from kxl.report.training import log_events, read_training, smoothed, thin
from kxl.svg import fmt, nice_ticks


def paths(results: Path) -> RunPaths:
    return RunPaths.under(results, results.parent / "logs")


def kxl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kxl", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_funnel_counts_every_stage_range_and_drop(run: Path) -> None:
    f = read_funnel(paths(run), None)
    assert f.totals == {"selected": 12, "kept": 9, "captioned": 8, "images": 7, "planned": 7}
    per = {r["range_index"]: r for r in f.per_range.iter_rows(named=True)}
    assert (per[0]["selected"], per[0]["kept"], per[0]["captioned"], per[0]["images"]) == (
        8, 6, 6, 5)
    assert (per[1]["selected"], per[1]["kept"], per[1]["captioned"], per[1]["images"]) == (
        4, 3, 2, 2)
    assert sorted(f.drops.iter_rows()) == sorted([
        ("manifest", "deleted", 2), ("manifest", "not_image", 1), ("captions", "no caption", 1),
        ("images", "corrupt_image", 1), ("images", "missing_file", 1)])
    assert f.gate.startswith("count gate: passed")
    assert not f.missing


def test_expected_counts_are_judged_as_the_count_gate_judges_them(run: Path) -> None:
    cfg = CountsConfig(ExpectedCounts(selected_posts=12, selected_per_range=[8, 5], images=8,
                                      buckets=3, steps=8), tolerance=0.1)
    rows = {e["name"]: e for e in read_funnel(paths(run), cfg).expected}
    assert rows["selected_posts"]["ok"] and rows["buckets"]["ok"] and rows["steps"]["ok"]
    # the gate's rule: off when |actual - expected| > tolerance * expected
    assert rows["images"]["actual"] == 7 and rows["images"]["ok"] is False  # 1 > 0.8
    assert rows["selected_per_range"]["actual"] == [8, 4]
    assert rows["selected_per_range"]["ok"] is False  # range 1: 1 > 0.5


def test_buckets_by_aspect_with_shares_and_plan(run: Path) -> None:
    b = read_buckets(paths(run))
    assert isinstance(b, Buckets)
    t = b.table
    assert t["width"].to_list() == [64, 96, 128]  # tall to wide
    assert t["images"].to_list() == [2, 4, 1]
    assert (b.images, b.upscaled, b.cropped) == (7, 2, 3)
    assert t["micro_batches"].to_list() == [2, 4, 2]
    assert t["steps"].to_list() == [2.0, 4.0, 2.0]  # W*A = 1


def test_thin_keeps_mean_min_max_of_each_bin() -> None:
    df = pl.DataFrame({"step": list(range(10)), "v": [3.0, 1, 2, 5, 4, 6, 0, 9, 8, 7]})
    th = thin(df, ["v"], max_points=4)  # bins of ceil(10/4) = 3 steps
    assert th["step"].to_list() == [1.0, 4.0, 7.0, 9.0]
    assert th["v"].to_list() == [2.0, 5.0, 17 / 3, 7.0]
    assert th["v_min"].to_list() == [1.0, 4.0, 0.0, 7.0]
    assert th["v_max"].to_list() == [3.0, 6.0, 9.0, 7.0]


def test_smoothed_is_the_bias_corrected_moving_average() -> None:
    x = np.array(LOSS)
    alpha = 2 / (10 + 1)  # span 10 (the minimum)
    w = (1 - alpha) ** np.arange(len(x))[::-1]
    want = [float((w[-i - 1:] * x[:i + 1]).sum() / w[-i - 1:].sum()) for i in range(len(x))]
    assert np.allclose(smoothed(pl.Series(LOSS)).to_numpy(), want)


def test_metrics_of_this_run_match_the_plan(run: Path) -> None:
    t = read_training(paths(run), run / "train/metrics.csv")
    assert not t.problems and not t.missing
    assert t.plan_steps == STEPS and t.samples_per_step == 14 / 8
    assert [(c.step, c.lokr_sha256) for c in t.checkpoints] == sorted(CKPT_SHA.items())
    assert [(r.step, r.source, r.down_s) for r in t.resumes] == [(4, "train log", None)]


def test_a_resume_shows_its_wall_clock_downtime(run: Path) -> None:
    # steps 0-3 ten seconds apart, then the crash: step 4's row comes 2 h 5 min 7 s (7507 s)
    # after step 3's, then ten seconds apart again; the train log has the resume at step 4
    t0 = 1_765_000_000.0
    times = [t0 + 10 * s for s in range(4)] + [t0 + 30 + 7507 + 10 * (s - 4) for s in range(4, 8)]
    (metrics_frame(plan_rows()).with_columns(pl.Series("wall_time", times))
     .write_csv(run / "train/metrics.csv"))
    t = read_training(paths(run), run / "train/metrics.csv")
    assert [(r.step, r.down_s) for r in t.resumes] == [(4, pytest.approx(7507.0))]
    assert kxl(run.parent, "report").returncode == 0
    page = (run / "report/run.html").read_text()
    assert "<td>resumed at step 4 after 2:05:07 down</td>" in page  # the resumes table
    assert ">resume @4 (2:05:07 down)</text>" in page  # the plots' mark


def test_downtime_needs_wall_times_on_both_sides() -> None:
    from kxl.report.page import clock
    from kxl.report.training import Resume, with_downtime

    m = pl.DataFrame({"step": [0, 1, 2, 3], "wall_time": [None, 5.0, 65.0, 70.5]})
    got = with_downtime(m, [Resume(0, "tensorboard", ""), Resume(1, "train log", ""),
                            Resume(3, "train log", "")])
    assert [r.down_s for r in got] == [None, None, 5.5]  # no step -1; step 0 has no time
    assert [clock(v) for v in (5.5, 7507, 97384, -5)] == ["0:00:06", "2:05:07", "27:03:04",
                                                          "-0:00:05"]


def test_metrics_from_another_run_are_named(run: Path) -> None:
    other = plan_rows().with_columns(pl.col("sample_seed") + 1)  # another seed's plan
    metrics_frame(other).write_csv(run / "train/metrics.csv")
    t = read_training(paths(run), run / "train/metrics.csv")
    assert len(t.problems) == 1
    assert re.match(r".*metrics\.csv: from another run: step 0 trained on rows hashed "
                    r"[0-9a-f]{16}, the plan has [0-9a-f]{16} there \(\d of \d checked steps "
                    r"differ\)$", t.problems[0])
    proc = kxl(run.parent, "report")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "another run" in ln]
    assert len(lines) == 1 and lines[0].startswith("kxl report: results/train/metrics.csv")
    page = (run / "report/run.html").read_text()
    assert 'class="problem">results/train/metrics.csv: from another run' in page


def test_metrics_longer_than_the_plan_are_named(run: Path) -> None:
    m = metrics_frame(plan_rows())
    extra = m.tail(1).with_columns(pl.lit(STEPS).cast(pl.Int64).alias("step"))
    pl.concat([m, extra]).write_csv(run / "train/metrics.csv")
    t = read_training(paths(run), run / "train/metrics.csv")
    assert any(f"has steps up to {STEPS}, the plan has {STEPS}" in p for p in t.problems)


def test_log_events_name_resumes_and_set_aside_checkpoints() -> None:
    text = ("[rank 0] skipping checkpoint: step-00000010: lokr.safetensors bytes changed\n"
            "[rank 0] results/train/checkpoints/step-00000005: settings differ (train.lr_unet); "
            "not this run's checkpoint, moved the checkpoints to results/train/superseded/x, "
            "starting at step 0\n[rank 0] resumed from a/step-00000005 at plan step index 5\n")
    resumes, notes = log_events(text)
    assert [(r.step, r.detail) for r in resumes] == [(5, "resumed from a/step-00000005")]
    assert notes[0].startswith("results/train/checkpoints/step-00000005 set aside (settings")
    assert notes[1] == "checkpoint skipped: step-00000010: lokr.safetensors bytes changed"


def test_tensorboard_sessions_show_every_resume(run: Path) -> None:
    tb = pytest.importorskip("torch.utils.tensorboard")
    folder = run / "train/tensorboard"
    for start, end in ((0, 3), (3, 6), (6, 8)):  # crashed at 3 and at 6, resumed each time
        w = tb.SummaryWriter(str(folder), purge_step=start, filename_suffix=f".{start}")
        for s in range(start, end):
            w.add_scalar("train/loss", LOSS[s], s)
        w.close()
    (run.parent / "logs/train/train.log").unlink()
    t = read_training(paths(run), run / "train/metrics.csv")
    assert [(r.step, r.source) for r in t.resumes] == [(3, "tensorboard"), (6, "tensorboard")]
    assert "session 2" in t.resumes[0].detail and "session 3" in t.resumes[1].detail


def test_provenance_inputs_same_or_changed(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kxl.provenance import record

    monkeypatch.chdir(run.parent)
    shutil.rmtree("results/train/checkpoints")  # hand-made manifests list no real files
    record("plan", ["results/plan/plan.parquet"], ["results/images/dataset.parquet"])
    record("train", ["results/train/metrics.csv"], ["results/plan/plan.parquet"])
    assert kxl(run.parent, "verify", "results", "--json", "results/audit/verify.json",
               "--exit-zero").returncode == 0
    p = read_provenance(Path("results"), Path("results/audit/verify.json"))
    by = {r.artifact: r for r in p.records}
    assert [i.now for i in by["results/train/metrics.csv"].inputs] == ["same"]
    assert [i.now for i in by["results/plan/plan.parquet"].inputs] == ["no record"]
    assert p.verify["passed"] is True and not p.stale_verify  # type: ignore[index]
    # the plan is remade after training: metrics.csv's record names another plan
    record("plan", ["results/plan/plan.parquet"], [])
    rec = Path("results/plan/.prov/plan.parquet.json")
    rec.write_text(rec.read_text().replace(json.loads(rec.read_text())["sha256"], "0" * 64))
    p = read_provenance(Path("results"), Path("results/audit/verify.json"))
    by = {r.artifact: r for r in p.records}
    assert [i.now for i in by["results/train/metrics.csv"].inputs] == ["changed"]
    assert p.stale_verify == ["results/plan/plan.parquet"]


def test_missing_artifacts_still_give_a_page_that_names_them(run: Path) -> None:
    for rel in ("plan/summary.json", "images/dataset.parquet", "buckets/histogram.csv"):
        (run / rel).unlink()
    (run / "train/metrics.csv").write_text("step,foo\n0,1\n")  # not a metrics file
    proc = kxl(run.parent, "report")
    assert proc.returncode == 0, proc.stderr
    page = (run / "report/run.html").read_text()
    lines = proc.stderr.strip().splitlines()
    for what, why in (("results/plan/summary.json", "missing"),
                      ("results/images/dataset.parquet", "missing"),
                      ("results/buckets/histogram.csv", "missing"),
                      ("results/train/metrics.csv", "has no column(s)"),
                      ("results/audit/verify.json", "missing")):
        mine = [ln for ln in lines if ln.startswith(f"kxl report: {what}: {why}")]
        assert mine, (what, lines)
        assert f"{what}: {why}" in page
    assert all(ln.startswith("kxl report: ") for ln in lines)
    assert '<h2 id=funnel>' in page and '<h2 id=provenance>' in page
    assert 'data-plot="funnel"' in page  # what could be read is still drawn


def test_page_is_self_contained_and_shows_the_run(run: Path) -> None:
    cfg = json.dumps({"expected": {"images": 8}, "tolerance": 0.0, "enforce": True})
    proc = kxl(run.parent, "report", "--counts-json", cfg)
    assert proc.returncode == 0, proc.stderr
    page = (run / "report/run.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert "<script src" not in page
    for plot in ("funnel", "drops", "buckets", "plan-buckets", "loss", "lr", "grad-norm",
                 "loss-scale", "speed"):
        m = re.search(rf'data-plot="{plot}" data-points="(\d+)"', page)
        assert m and int(m[1]) > 0, plot
    assert re.search(r'data-series="loss" data-n="8"', page)
    for step, sha in CKPT_SHA.items():
        assert f"ckpt {step} {sha[:8]}" in page and sha in page
    assert "resume @4" in page
    assert re.search(r"<td>images</td><td class=num>8</td><td class=num>7</td>"
                     r"<td><span class=bad>NO</span>", page)
    assert "upscaled: 2 (28.6%); cropped: 3 (42.9%)" in page


def test_watch_once_draws_the_running_metrics(run: Path) -> None:
    m = metrics_frame(plan_rows()).head(5)
    text = m.write_csv()
    (run / "train/metrics.running.csv").write_text(text + "5,0.3,0.00025,0.0")  # half a line
    proc = kxl(run.parent, "report", "--watch", "--once", "--every", "30")
    assert proc.returncode == 0, proc.stderr
    assert "5 step(s) logged of 8 in the plan (62.5%)" in proc.stdout
    assert "results/report/live.html" in proc.stdout
    page = (run / "report/live.html").read_text()
    assert '<meta http-equiv="refresh" content="30">' in page
    assert re.search(r'data-series="loss" data-n="5"', page)
    assert "<h2 id=funnel>" not in page  # training only: cheap to redraw


def test_axis_helpers() -> None:
    assert nice_ticks(0, 834, 6) == [0, 200, 400, 600, 800]
    assert nice_ticks(0.0, 1e-3, 4) == pytest.approx([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert [fmt(v) for v in (20354, 5_210_319, 2203, 0.00025, 0.5)] == [
        "20.4k", "5.21M", "2,203", "2.5e-04", "0.5"]


def test_renders_in_headless_chromium(run: Path, dump_dom) -> None:
    assert kxl(run.parent, "report").returncode == 0
    page = run / "report/run.html"
    res = dump_dom(page)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    plots = re.search(r'data-plots="(\d+)" data-plots-drawn="(\d+)"', dom)
    assert plots and int(plots[1]) >= 9 and plots[1] == plots[2], plots  # each has drawn data
    assert 'data-drawn="0"' not in dom
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console


def test_plots_follow_the_page_width_in_headless_chromium(run: Path, dump_dom) -> None:
    """The page is at most 1100 px wide plus 16 px padding each side; plots fill it, down to
    0.8 x 760 = 608 px (text no smaller than 11 px x 0.8), then the figure scrolls."""
    assert kxl(run.parent, "report").returncode == 0
    widths = {}
    for viewport in (400, 700, 1300):
        res = dump_dom(run / "report/run.html", width=viewport)
        assert res.returncode == 0, res.stderr[-2000:]
        widths[viewport] = {int(w) for w in re.findall(r'data-width="(\d+)"', res.stdout)}
    # one width per page: every plot (line, bar and stacked bars) follows the page alike
    assert widths[1300] == {1100}  # the page's max-width
    assert widths[700] == {700 - 2 * 16}
    assert widths[400] == {608}  # the minimum: narrower would shrink the text below legibility


def test_a_section_that_fails_to_draw_costs_only_that_section(
        run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kxl.report import build, page

    def broken(_: object) -> str:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(page, "buckets_section", broken)
    rep = build.build_report(paths(run), run / "report/run.html", None)
    assert any(p == "Buckets: could not be drawn (ZeroDivisionError: division by zero)"
               for p in rep.problems)
    assert "<h2 id=buckets>Buckets</h2>" in rep.html and 'data-plot="loss"' in rep.html


def test_links_to_the_audit_diff_and_series_pages_that_exist(run: Path) -> None:
    from kxl.report import build

    for rel in ("audit/diff/lokr-vs-merged.html", "audit/series/rebuilt.html"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("<html></html>")
    rep = build.build_report(paths(run), run / "report/run.html", None)
    assert "audit diff: lokr-vs-merged" in rep.html and "audit series: rebuilt" in rep.html
