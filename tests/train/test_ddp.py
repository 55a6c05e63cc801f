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


def _assert_lion_close(a: dict, b: dict) -> None:
    """The module docstring's tolerance: within 2 * lr * steps, <= 0.1 % of weights differing."""
    total = differing = 0
    for k in a:
        diff = (a[k] - b[k]).abs()
        assert float(diff.max()) <= 2 * LR * STEPS + 1e-6, k
        total += diff.numel()
        differing += int((diff > 0).sum())
    assert differing <= 1e-3 * total, f"{differing} of {total} weights differ"


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
    _assert_lion_close(a, b)
    # the per-step losses agree up to the same reduction-order noise
    la, lb = (_losses(tmp_path / d / "metrics.csv") for d in ("one", "two"))
    assert len(la) == len(lb) == STEPS
    assert all(abs(x - y) <= 1e-4 * abs(x) for x, y in zip(la, lb, strict=True))


def _inputs_with_layout(src: Path, dst: Path, world: int) -> Path:
    """A copy of the tiny inputs whose plan is laid out for `world` ranks with the same W*A."""
    import polars as pl

    from kxl.tables import write_table
    from kxl.train.data import PLAN_SCHEMA

    shutil.copytree(src, dst)
    plan = pl.read_parquet(dst / "plan.parquet")
    i = pl.col("micro").cast(pl.Int64) * (int(plan["rank"].max()) + 1) + pl.col("rank")
    plan = plan.with_columns((i % world).alias("rank"), (i // world).alias("micro"))
    write_table(plan.cast(PLAN_SCHEMA), dst / "plan.parquet", PLAN_SCHEMA)
    return dst


@pytest.mark.slow
def test_checkpoint_of_one_rank_continues_on_two(tiny_inputs, tmp_path) -> None:
    """Issue 21 section 3 (elastic resume): a run checkpointed by one process with plan
    (W=1, A=2) continues under torchrun with two ranks and plan (W=2, A=1), and ends where an
    uninterrupted one-process run ends, to the reduction-order tolerance above."""
    src = tiny_inputs["plan"].parent
    one = _inputs_with_layout(src, tmp_path / "w1a2", 1)
    two = _inputs_with_layout(src, tmp_path / "w2a1", 2)
    cfg = config_json(lr_unet=LR, checkpoint_every=3, warmup_counting="global")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    _run([sys.executable, str(RUNNER), str(one), str(tmp_path / "ref"), "none", cfg])
    part = config_json(lr_unet=LR, checkpoint_every=3, warmup_counting="global", max_steps=3)
    _run([sys.executable, str(RUNNER), str(one), str(tmp_path / "run"), "none", part])
    _run([torchrun, "--standalone", "--nproc-per-node", "2", str(RUNNER), str(two),
          str(tmp_path / "run"), "auto", cfg])
    a = load_file(str(tmp_path / "ref/lokr.safetensors"))
    b = load_file(str(tmp_path / "run/lokr.safetensors"))
    _assert_lion_close(a, b)
    la, lb = (_losses(tmp_path / d / "metrics.csv") for d in ("ref", "run"))
    assert len(la) == len(lb) == STEPS
    assert la[:3] == lb[:3]  # the first three steps are the same process's
    assert all(abs(x - y) <= 1e-4 * abs(x) for x, y in zip(la, lb, strict=True))
