"""Running the default pipeline for the end-to-end and cluster tests.

The workflow runs in a copy of the checkout (tracked + untracked, not ignored files) so tests never
touch the developer's results/, exactly as a fresh clone would. One such run is shared by every
test through the session fixture `default_run` (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The furthest targets of the default pipeline; the e2e tests check what they produce.
TARGETS = [
    "results/captions/captions.parquet",
    "results/plan/plan.parquet",
    "results/epsilon.safetensors",
    "results/audit/diff/lokr-vs-merged.json",
    "results/audit/series/rebuilt.html",  # seconds: 4 step_lokr exports + one streamed pass
    "results/eval/ccip/report.html",
    "results/report/run.html",  # seconds: rule verify + the report, from the finished run
]


@dataclass(frozen=True)
class Workflow:
    root: Path

    def snakemake(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        return subprocess.run(
            [str(BIN / "snakemake"), "--cores", "2", *args],
            cwd=self.root, env=env, capture_output=True, text=True, check=check,
        )

    def kxl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kxl"), *args], cwd=self.root, capture_output=True, text=True, check=check
        )


def jobs_planned(dry_run_stdout: str) -> set[str]:
    """Rule names of a `snakemake -n` job table ('rule   count' lines after 'Job stats')."""
    m = re.search(r"Job stats:\n(.*?)\n\n", dry_run_stdout, re.S)
    if not m:
        return set()
    rows = [line.split() for line in m.group(1).splitlines()[2:]]
    return {r[0] for r in rows if r and r[0] not in {"total", "all"}}


def copy_checkout(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # The eval stage runs in its own venv (imgutils pins numpy<2); rules find it in the workdir.
    if (ROOT / ".venv-eval").is_dir():
        (dest / ".venv-eval").symlink_to(ROOT / ".venv-eval")
    return dest


# The micro override (config/micro.yaml): every rule in a few minutes, for the fast tier.
MICRO = ("--configfile", "config/config.yaml", "config/micro.yaml")


def run_default(dest: Path, targets: list[str], *args: str) -> Workflow:
    """The pipeline in a fresh copy of the checkout; `args` after the targets (a --configfile
    takes every word after it)."""
    wf = Workflow(copy_checkout(dest))
    proc = wf.snakemake(*targets, *args, check=False)
    if proc.returncode != 0:
        pytest.fail(f"pipeline {' '.join(args) or '(default)'} failed:\n{proc.stderr[-6000:]}")
    return wf


# Training metrics carry wall-clock throughput (images_per_s) and row times (wall_time),
# TensorBoard event files carry timestamps, and the run report plots images/s: compared without
# those, everything else must be byte-identical.
TIMED = ("results/train/tensorboard/", "results/report/run.html",
         "results/report/.prov/run.html.json")
METRICS = ("results/train/metrics.csv", "results/train/metrics.running.csv")
LOCK = "results/train/train.lock"  # the last trainer's pid and host: bookkeeping, no artifact


def prov_record(path: Path) -> dict[str, object]:
    rec = json.loads(path.read_text())
    assert "mtime_ns" in rec, f"{path}: provenance record without mtime_ns"
    rec.pop("mtime_ns")
    return dict(rec)


def explain(a: Path, b: Path, rel: str) -> str:
    """Which fields of a provenance record differ (git_commit or packages: the checkout or the
    venv changed while the test ran)."""
    if "/.prov/" not in rel:
        return rel
    ra, rb = prov_record(a / rel), prov_record(b / rel)
    return f"{rel}: " + ", ".join(f"{k}: {ra.get(k)} != {rb.get(k)}" for k in sorted(ra)
                                  if ra.get(k) != rb.get(k))


def _untimed_metrics(data: bytes) -> bytes:
    lines = data.decode().splitlines()
    timed = {i for i, c in enumerate(lines[0].split(",")) if c in ("images_per_s", "wall_time")}
    return "\n".join(",".join(v for i, v in enumerate(ln.split(",")) if i not in timed)
                     for ln in lines).encode()


def result_digests(workdir: Path) -> dict[str, str]:
    """sha256 of every file under results/; provenance records without their file mtime;
    training metrics without their wall-clock columns; TensorBoard events, the run report and
    the training lock left out."""
    out: dict[str, str] = {}
    for path in sorted((workdir / "results").rglob("*")):
        rel = path.relative_to(workdir).as_posix()
        if rel.startswith(TIMED) or rel == LOCK:
            continue
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            data = path.read_bytes()
            if rel in METRICS:
                data = _untimed_metrics(data)
            elif path.parent.name == ".prov":  # mtime_ns differs between any two runs by design
                rec = prov_record(path)
                rec.pop("environment", None)  # thread counts may differ inside an allocation
                if rec.get("artifact") in METRICS:
                    rec.pop("sha256"), rec.pop("size")
                data = json.dumps(rec, sort_keys=True).encode()
            out[rel] = hashlib.sha256(data).hexdigest()
    return out
