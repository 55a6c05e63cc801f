"""Rank invariance: 2-rank gloo DDP (torchrun) with accumulation A == 1 rank with 2A.

Both runs train the same micro-batches with the same per-(step, plan rank, micro) noise; the
only difference is float summation order of the gradients (all-reduce of two partial sums vs
one sequential sum), a relative difference of ~1e-7 in the gradients. Lion's update is
lr * sign(...), so a sign can flip only where the momentum interpolation is ~0; each flip moves
a weight by at most 2 * lr (+ weight decay terms). Tolerance: every weight within 2 * lr * steps
of the reference, and at most 0.1 % of the weights differing at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from train_helpers import config_json

RUNNER = Path(__file__).with_name("run_tiny.py")
ROOT = Path(__file__).resolve().parents[2]
LR = 1e-3
STEPS = 6


def _run(cmd: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _losses(path: Path) -> list[float]:
    return [float(r.split(",")[1]) for r in path.read_text().splitlines()[1:]]


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_double_accumulation(tiny_inputs, tmp_path) -> None:
    inputs = str(tiny_inputs["plan"].parent)
    cfg = config_json(lr_unet=LR, checkpoint_every=STEPS)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun not found beside the interpreter"
    _run([sys.executable, str(RUNNER), inputs, str(tmp_path / "one"), "none", cfg])
    _run(
        [
            torchrun,
            "--standalone",
            "--nproc-per-node",
            "2",
            str(RUNNER),
            inputs,
            str(tmp_path / "two"),
            "none",
            cfg,
        ]
    )
    a = load_file(str(tmp_path / "one/lokr.safetensors"))
    b = load_file(str(tmp_path / "two/lokr.safetensors"))
    assert a.keys() == b.keys()
    total = differing = 0
    for k in a:
        diff = (a[k] - b[k]).abs()
        assert float(diff.max()) <= 2 * LR * STEPS + 1e-6, k
        total += diff.numel()
        differing += int((diff > 0).sum())
    assert differing <= 1e-3 * total, f"{differing} of {total} weights differ"
    # the per-step losses agree up to the same reduction-order noise
    la, lb = (_losses(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    assert len(la) == len(lb) == STEPS
    assert all(abs(x - y) <= 1e-4 * abs(x) for x, y in zip(la, lb, strict=True))
