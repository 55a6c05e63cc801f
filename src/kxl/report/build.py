"""The whole run report, and the live training view, from a run's artifacts.

Each part is read on its own; a part whose artifact is missing, unreadable or of an unexpected
shape becomes a `Missing` notice in its section and one line in `problems`, so a half-finished
or damaged run still gets a page that says what it lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kxl.checks.counts import CountsConfig
from kxl.report import page
from kxl.report.buckets import read_buckets
from kxl.report.funnel import read_funnel
from kxl.report.inputs import Missing, RunPaths
from kxl.report.provenance import read_provenance
from kxl.report.training import Training, read_training

T = TypeVar("T")


@dataclass(frozen=True)
class Report:
    html: str
    problems: list[str]  # one line each: what is missing or wrong, and where


def guarded(what: Path, read: Callable[[], T | Missing]) -> T | Missing:
    """`read()`, or a Missing naming `what` when its artifact has an unexpected shape (a summary
    without a key, a wrong type): one section fails, not the page."""
    try:
        return read()
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OSError) as exc:
        return Missing(str(what), f"unexpected content ({exc.__class__.__name__}: {exc})")


def drawn(title: str, anchor: str, draw: Callable[[T], str], part: T,
          problems: list[str]) -> str:
    """`draw(part)`, or the section's heading and a notice when drawing fails on data the
    readers let through (all-NaN columns and the like): the other sections still show."""
    try:
        return draw(part)
    except Exception as exc:  # any failure here must cost one section, not the page
        line = f"{title}: could not be drawn ({exc.__class__.__name__}: {exc})"
        problems.append(line)
        return f"<h2 id={anchor}>{title}</h2>" + page.notices([line], "problem")


def _lines(part: object) -> list[str]:
    if isinstance(part, Missing):
        return [str(part)]
    lines = [str(m) for m in getattr(part, "missing", [])]
    return lines + list(getattr(part, "problems", []))


def build_report(paths: RunPaths, out: Path, counts: CountsConfig | None) -> Report:
    funnel = guarded(paths.posts_summary, lambda: read_funnel(paths, counts))
    buckets = guarded(paths.histogram, lambda: read_buckets(paths))
    training = guarded(paths.metrics, lambda: read_training(paths, paths.metrics))
    prov = read_provenance(paths.results, paths.verify)
    problems = [line for part in (funnel, buckets, training, prov) for line in _lines(part)]
    links = [("CCIP evaluation", paths.ccip), ("kxl verify result (JSON)", paths.verify)]
    for what, folder in (("audit diff", paths.diffs), ("audit series", paths.series)):
        pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
        links += [(f"{what}: {d.stem}", d) for d in pages]
    sections = [drawn("Data funnel", "funnel", page.funnel_section, funnel, problems),
                drawn("Buckets", "buckets", page.buckets_section, buckets, problems),
                drawn("Training", "training", page.training_section, training, problems),
                drawn("Provenance", "provenance", page.provenance_section, prov, problems),
                page.links_section(out, links)]
    html = page.page("kxl run report", f"results folder: {paths.results}", problems, sections)
    return Report(html, problems)


NO_METRICS_YET = "does not exist yet (training has not started or not finished its first step)"


def build_live(paths: RunPaths, refresh_s: int, now: str) -> tuple[Report, Training | Missing]:
    """The training section alone, from metrics.running.csv (what a running trainer appends),
    reloading itself every `refresh_s` seconds."""
    running = paths.metrics_running
    training = (guarded(running, lambda: read_training(paths, running)) if running.is_file()
                else Missing(str(running), NO_METRICS_YET))
    problems = _lines(training)
    section = drawn("Training", "training", page.training_section, training, problems)
    html = page.page("kxl training (live)", f"updated {now}; reloads every {refresh_s} s; "
                     f"results folder: {paths.results}", problems, [section],
                     refresh_s=refresh_s)
    return Report(html, problems), training
