"""Running the default pipeline for the end-to-end and cluster tests.

The workflow runs in a copy of the checkout (tracked + untracked, not ignored files) so tests never
touch the developer's results/, exactly as a fresh clone would. One such run is shared by every
test through the session fixture `default_run` (tests/conftest.py).
"""

from __future__ import annotations

import os
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


def run_default(dest: Path, targets: list[str]) -> Workflow:
    wf = Workflow(copy_checkout(dest))
    proc = wf.snakemake(*targets, check=False)
    if proc.returncode != 0:
        pytest.fail(f"default pipeline failed:\n{proc.stderr[-6000:]}")
    return wf

