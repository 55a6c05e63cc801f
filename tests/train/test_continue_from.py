"""`kxl train --continue-from`: a crash scenario continues another run's checkpoint at step k
over its own plan (kxl.audit.crash), with the warmup restarted or continued; a checkpoint whose
settings or plan rows before k differ is refused in one line."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from train_helpers import tiny_trainer

from kxl.audit.crash import emulate_resume
from kxl.errors import KxlError
from kxl.tables import read_table, write_table
from kxl.train.data import PLAN_SCHEMA
from kxl.train.trainer import run

K = 3  # tiny_inputs: 6 steps, plan world 2; the exact run keeps its checkpoint at step 3
QUIET = {"log": lambda s: None}


@pytest.fixture(scope="module")
def exact(tiny_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exact")
    run(tiny_trainer(tiny_inputs, out, {"checkpoint_steps": [K]}), "none",
        out / "lokr.safetensors", **QUIET)
    return out


def _plan(tiny_inputs, tmp_path: Path, resume_step: int) -> dict:
    plan = read_table(tiny_inputs["plan"], PLAN_SCHEMA)
    path = tmp_path / f"crash-{resume_step}.parquet"
    write_table(emulate_resume(plan, resume_step, "restart-epoch"), path, PLAN_SCHEMA)
    return {**tiny_inputs, "plan": str(path)}


def _lrs(out: Path) -> dict[int, float]:
    with open(out / "metrics.csv", newline="") as fh:
        return {int(r["step"]): float(r["lr_unet"]) for r in csv.DictReader(fh)}


@pytest.mark.parametrize("warmup", ["restart", "continue"])
def test_continues_the_checkpoint_over_the_new_plan(tiny_inputs, exact, tmp_path, warmup) -> None:
    out = tmp_path / "crash"
    trainer = tiny_trainer(_plan(tiny_inputs, tmp_path, K), out, {"checkpoint_steps": [K]})
    res = run(trainer, "auto", out / "lokr.safetensors", **QUIET,
              continue_from=exact / f"checkpoints/step-{K:08d}", warmup=warmup)
    assert res.steps_run == 6 - K
    # its own checkpoint K holds the continued state: the same LoKr and optimizer bytes
    for name in ("lokr.safetensors", "state.safetensors"):
        assert (out / f"checkpoints/step-{K:08d}" / name).read_bytes() == \
            (exact / f"checkpoints/step-{K:08d}" / name).read_bytes()
    # lr_unet 1e-3, warmup_steps 2 counted per process on the plan's 2 ranks: a scheduler
    # built at step 3 gives 0 / 2 at step 3 and 1 from step 4 on; the exact run's is 1 by then
    want = {"restart": {3: 0.0, 4: 1e-3, 5: 1e-3}, "continue": {3: 1e-3, 4: 1e-3, 5: 1e-3}}
    assert _lrs(out) == pytest.approx(want[warmup], abs=0)
    assert {s: lr for s, lr in _lrs(exact).items() if s >= K} == {3: 1e-3, 4: 1e-3, 5: 1e-3}


def test_a_rerun_resumes_its_own_checkpoints_with_the_restarted_warmup(
        tiny_inputs, exact, tmp_path) -> None:
    """Preemption of the scenario: the rerun continues its own checkpoint 4, whose schedule
    state holds the restart, not the exact run's checkpoint again."""
    inputs, out = _plan(tiny_inputs, tmp_path, K), tmp_path / "crash"
    ckpt = exact / f"checkpoints/step-{K:08d}"
    over = {"checkpoint_steps": [K], "checkpoint_every": 1}
    run(tiny_trainer(inputs, out, {**over, "max_steps": 4}), "auto", out / "a.safetensors",
        **QUIET, continue_from=ckpt, warmup="restart")
    msgs: list[str] = []
    res = run(tiny_trainer(inputs, out, over), "auto", out / "b.safetensors", log=msgs.append,
              continue_from=ckpt, warmup="restart")
    assert res.steps_run == 2 and "step-00000004" in msgs[0]
    assert _lrs(out) == {3: 0.0, 4: 1e-3, 5: 1e-3}


def test_refuses_a_plan_that_differs_before_the_checkpoint(tiny_inputs, exact, tmp_path) -> None:
    trainer = tiny_trainer(_plan(tiny_inputs, tmp_path, 2), tmp_path / "crash")
    with pytest.raises(KxlError, match=r"^\S+step-00000003: cannot continue from this checkpoint: "
                       r"made with a different plan \(its first 3 step\(s\) differ\)$"):
        run(trainer, "auto", tmp_path / "x.safetensors", **QUIET,
            continue_from=exact / "checkpoints/step-00000003", warmup="restart")


def test_refuses_another_math_setting(tiny_inputs, exact, tmp_path) -> None:
    trainer = tiny_trainer(_plan(tiny_inputs, tmp_path, K), tmp_path / "crash", {"lr_unet": 2e-3})
    with pytest.raises(KxlError, match=r"cannot continue from this checkpoint: made with "
                       r"train.lr_unet=0.001, config now has 0.002$"):
        run(trainer, "auto", tmp_path / "x.safetensors", **QUIET,
            continue_from=exact / "checkpoints/step-00000003", warmup="continue")


def test_a_restarted_warmup_needs_a_checkpoint_to_continue(tiny_inputs, tmp_path) -> None:
    trainer = tiny_trainer(tiny_inputs, tmp_path / "run")
    with pytest.raises(KxlError, match="--warmup restart needs --continue-from"):
        run(trainer, "auto", tmp_path / "x.safetensors", **QUIET, warmup="restart")


def test_refuses_a_checkpoint_that_was_not_kept(tiny_inputs, exact, tmp_path) -> None:
    trainer = tiny_trainer(_plan(tiny_inputs, tmp_path, K), tmp_path / "crash")
    with pytest.raises(KxlError, match=r"step-00000002: no checkpoint to continue from \(the run "
                       r"keeps the steps of train.checkpoint_steps\)$"):
        run(trainer, "auto", tmp_path / "x.safetensors", **QUIET,
            continue_from=exact / "checkpoints/step-00000002", warmup="restart")
