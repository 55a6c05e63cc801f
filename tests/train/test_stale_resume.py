"""A checkpoint continues only its own run (issue 21): a rerun after a change that alters the
math gives what a fresh run gives; a resume-free change still resumes; one trainer per folder."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config

from kxl.config import from_dict, to_dict
from kxl.errors import KxlError
from kxl.lokr.network import LokrSpec
from kxl.train import fingerprint
from kxl.train.config import RunResources, TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def quiet(_: str) -> None:
    pass


def _trainer(inputs, out: Path, seed: int = 1337, data=None, **over):
    from fixtures_train import build_models, stub_augment

    from kxl.train.data import PixelCache, load_plan_data
    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, tiny_config(**over), "train")
    data = data or load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], 0, 1)
    return Trainer(build_models("tiny", seed=0), data, PixelCache(inputs["cache"]), cfg, seed,
                   out, World(0, 1, 0, torch.device("cpu")), stub_augment,
                   {"base": "1" * 64})


def _train(inputs, out: Path, lokr: Path, resume: str = "none", log=quiet, **kw):
    from kxl.train.trainer import run

    tr = _trainer(inputs, out, **kw)
    return tr, run(tr, resume, lokr, log=log)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same(a: Path, b: Path) -> bool:
    x, y = _tensors(a), _tensors(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# -- the fingerprint covers every math-deciding setting -------------------------------------

# One other value for every TrainConfig / LokrSpec field that decides the math. A new field
# without an entry here (or a reason in fingerprint.RESUME_FREE) fails the test below.
OTHER_VALUE = {
    "lr_unet": 3e-5, "lr_text_encoder": 1e-6, "betas": (0.9, 0.99), "weight_decay": 0.0,
    "warmup_steps": 10, "warmup_counting": "global", "min_snr_gamma": None, "noise_offset": 0.0,
    "max_grad_norm": 2.0, "beta_start": 0.001, "beta_end": 0.02, "num_train_timesteps": 500,
    "vae_scale": 0.13025, "max_token_length": 75, "mixed_precision": "no",
    "rng_streams": "shared", "full_fp16": True, "init_lokr": "other.safetensors", "init_step": 5,
    "caption_shuffle": False, "caption_tag_dropout": 0.5,
}
OTHER_LOKR = {"preset": "other.toml", "dim": 8, "alpha": 1.0, "conv_dim": 8, "conv_alpha": 1.0,
              "factor": 4, "train_norm": False}
FREE_VALUE = {
    "run": RunResources(nproc=2), "max_steps": 3, "checkpoint_steps": [2],
    "checkpoint_every": 5, "keep_last": 9, "tensorboard": True, "gradient_checkpointing": True,
    "save_precision": "fp16", "data_workers": 3, "prefetch": 4,
}


def _settings(cfg: TrainConfig, seed: int = 1) -> dict:
    return fingerprint.settings(to_dict(cfg), seed)


def test_every_train_field_is_in_the_fingerprint_or_declared_resume_free() -> None:
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"lokr"}
    assert set(fingerprint.RESUME_FREE) <= fields
    assert fields - set(fingerprint.RESUME_FREE) == set(OTHER_VALUE), "give new fields a value"
    assert set(FREE_VALUE) == set(fingerprint.RESUME_FREE)
    assert {f.name for f in dataclasses.fields(LokrSpec)} == set(OTHER_LOKR)
    # init_lokr set in the base: init_step needs it
    base = TrainConfig(lokr=LokrSpec(preset="kohaku.toml"), init_lokr="released.safetensors")
    ref = _settings(base)
    for key, value in OTHER_VALUE.items():
        got = _settings(dataclasses.replace(base, **{key: value}))
        problem = fingerprint.settings_mismatch(ref, got)
        assert problem and problem.startswith(f"made with train.{key}="), (key, problem)
    for key, value in OTHER_LOKR.items():
        lokr = dataclasses.replace(base.lokr, **{key: value})
        problem = fingerprint.settings_mismatch(ref, _settings(dataclasses.replace(base,
                                                                                   lokr=lokr)))
        assert problem and "train.lokr=" in problem, key
    for key, value in FREE_VALUE.items():
        assert _settings(dataclasses.replace(base, **{key: value})) == ref, key
    # the seed is part of it too
    assert "seed=1" in fingerprint.settings_mismatch(ref, _settings(base, seed=2))


def test_a_checkpoint_from_before_the_caption_move_still_matches() -> None:
    """Checkpoints written while the caption settings came from the plan section name them
    `caption.shuffle` / `caption.tag_dropout`; the same values under train: continue them."""
    now = _settings(TrainConfig(lokr=LokrSpec(preset="kohaku.toml"), caption_shuffle=True,
                                caption_tag_dropout=0.15))
    old = {k: v for k, v in now.items() if not k.startswith("train.caption_")}
    assert fingerprint.settings_mismatch({**old, "caption.shuffle": True,
                                          "caption.tag_dropout": 0.15}, now) is None
    assert fingerprint.settings_mismatch({**old, "caption.shuffle": True,
                                          "caption.tag_dropout": 0.5}, now) == (
        "made with train.caption_tag_dropout=0.5, config now has 0.15")


# -- reruns after a change equal fresh runs ------------------------------------------------

@pytest.mark.parametrize("change", [
    {"caption_tag_dropout": 0.5},       # train.caption_tag_dropout (measured stale in issue 21)
    {"caption_shuffle": False},         # train.caption_shuffle
    {"noise_offset": 0.0},              # a train setting
    {"seed": 7},                        # the run seed
])
def test_rerun_after_a_math_change_equals_a_fresh_run(tiny_inputs, tmp_path, change) -> None:
    _train(tiny_inputs, tmp_path / "run", tmp_path / "old.safetensors", checkpoint_every=2)
    msgs: list[str] = []
    _, res = _train(tiny_inputs, tmp_path / "run", tmp_path / "rerun.safetensors", "auto",
                    msgs.append, checkpoint_every=2, **change)
    assert res.steps_run == 6, msgs
    assert "not this run's checkpoint" in msgs[0] and "superseded" in msgs[0], msgs
    _train(tiny_inputs, tmp_path / "fresh", tmp_path / "fresh.safetensors", **change)
    assert _same(tmp_path / "rerun.safetensors", tmp_path / "fresh.safetensors")
    assert not _same(tmp_path / "rerun.safetensors", tmp_path / "old.safetensors")


def test_resume_free_change_still_resumes(tiny_inputs, tmp_path) -> None:
    _train(tiny_inputs, tmp_path / "a", tmp_path / "a.safetensors", checkpoint_every=3)
    _train(tiny_inputs, tmp_path / "b", tmp_path / "b3.safetensors", checkpoint_every=3,
           max_steps=3)
    msgs: list[str] = []
    _, res = _train(tiny_inputs, tmp_path / "b", tmp_path / "b.safetensors", "auto",
                    msgs.append, checkpoint_every=1, keep_last=5, gradient_checkpointing=True)
    assert res.steps_run == 3 and "resumed from" in msgs[0], msgs
    torch.testing.assert_close(_tensors(tmp_path / "b.safetensors"),
                               _tensors(tmp_path / "a.safetensors"), rtol=1e-5, atol=1e-7)


def test_lowered_max_steps_never_continues_past_the_budget(tiny_inputs, tmp_path) -> None:
    """Issue 21: max_steps 50 after an 830-step run 'trained -780 step(s)' and wrote the
    830-step LoKr. Now the newest checkpoint inside the budget continues (or step 0), and the
    ones past it are moved aside."""
    run_dir = tmp_path / "run"
    _train(tiny_inputs, run_dir, tmp_path / "six.safetensors", checkpoint_every=1,
           checkpoint_steps=[2])
    assert [p.name for p in sorted((run_dir / "checkpoints").iterdir())] == [
        "step-00000002", "step-00000005", "step-00000006"]
    msgs: list[str] = []
    tr, res = _train(tiny_inputs, run_dir, tmp_path / "three.safetensors", "auto", msgs.append,
                     checkpoint_every=1, checkpoint_steps=[2], max_steps=3)
    assert (res.steps_run, res.last_step) == (1, 3), msgs
    assert "2 checkpoint(s) past this run's budget of 3 step(s)" in msgs[0]
    assert "step-00000002" in msgs[1]
    moved = sorted(p.name for p in (run_dir / "superseded").glob("checkpoints-*/step-*"))
    assert moved == ["step-00000005", "step-00000006"]
    _train(tiny_inputs, tmp_path / "fresh", tmp_path / "fresh.safetensors", max_steps=3)
    assert _same(tmp_path / "three.safetensors", tmp_path / "fresh.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "three.safetensors"), "pt") as f:
        assert f.metadata()["kxl_steps"] == "3"
    # an explicit checkpoint past the budget is refused in one line
    from kxl.train.trainer import run

    past = tmp_path / "run/superseded" / next(iter(
        (run_dir / "superseded").iterdir())).name / "step-00000006"
    with pytest.raises(KxlError, match=r"position 6 is outside this run's budget of 3"):
        run(_trainer(tiny_inputs, tmp_path / "x", max_steps=3), str(past),
            tmp_path / "x.safetensors", log=quiet)


def test_nothing_inside_the_budget_starts_at_step_zero(tiny_inputs, tmp_path) -> None:
    run_dir = tmp_path / "run"
    _train(tiny_inputs, run_dir, tmp_path / "six.safetensors", checkpoint_every=3)
    _, res = _train(tiny_inputs, run_dir, tmp_path / "two.safetensors", "auto", max_steps=2)
    assert res.steps_run == 2
    _train(tiny_inputs, tmp_path / "fresh", tmp_path / "fresh.safetensors", max_steps=2)
    assert _same(tmp_path / "two.safetensors", tmp_path / "fresh.safetensors")


def test_plan_prefix_decides_not_the_next_step(tiny_inputs, tmp_path) -> None:
    """A plan that differs in a step the checkpoint already consumed is another run; one that
    differs only after it is the same run so far."""
    from kxl.train.data import load_plan_data

    data = load_plan_data(tiny_inputs["plan"], tiny_inputs["captions"], tiny_inputs["buckets"],
                          0, 1)
    tr, _ = _train(tiny_inputs, tmp_path / "run", tmp_path / "a.safetensors", max_steps=3,
                   checkpoint_every=3)
    meta = tr.ckpt.meta(tmp_path / "run/checkpoints/step-00000003")

    def with_seed_changed(step: int):
        from kxl.train.data import PlanData

        plan = data.plan.with_columns(
            pl.when((pl.col("step") == step) & (pl.col("slot") == 0))
            .then(pl.col("sample_seed") + 1).otherwise(pl.col("sample_seed"))
            .alias("sample_seed"))
        caps = pl.read_parquet(tiny_inputs["captions"])
        return PlanData(plan, caps, pl.read_parquet(tiny_inputs["buckets"]), 0, 1)

    later = _trainer(tiny_inputs, tmp_path / "x", data=with_seed_changed(4), max_steps=3)
    assert later.mismatch(meta) is None
    earlier = _trainer(tiny_inputs, tmp_path / "x", data=with_seed_changed(1), max_steps=3)
    assert earlier.mismatch(meta) == "made with a different plan (its first 3 step(s) differ)"


def test_checkpoint_from_an_older_kxl_is_not_continued(tiny_inputs, tmp_path) -> None:
    tr = _trainer(tiny_inputs, tmp_path / "x")
    assert "no run fingerprint" in tr.mismatch({"config": to_dict(tr.cfg), "next_step": 1})


# -- one trainer per folder ----------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from kxl.train.lock import training_lock
with training_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_second_trainer_on_a_folder_refuses_and_a_dead_holder_is_taken_over(
    tiny_inputs, tmp_path
) -> None:
    from kxl.train.trainer import run

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              cwd=ROOT, env=dict(os.environ))
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(KxlError) as err:
            run(_trainer(tiny_inputs, out, max_steps=1), "auto", tmp_path / "a.safetensors",
                log=quiet)
        msg = str(err.value)
        assert f"another trainer (pid {holder.pid} on " in msg and "\n" not in msg
        assert not (out / "checkpoints").exists() and not (tmp_path / "a.safetensors").exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    # the holder died without releasing anything by hand: its lock is taken over
    res = run(_trainer(tiny_inputs, out, max_steps=1), "auto", tmp_path / "a.safetensors",
              log=quiet)
    assert res.steps_run == 1


# -- elastic resume: a checkpoint continues on another (W, A) with the same W*A -------------

def _relayout(inputs, world: int):
    """The tiny plan (W=2, A=1) laid out for `world` ranks: micro-batch i = micro*W + rank of
    each step keeps its place, as kxl.plan.build lays out any (W, A) with the same W*A."""
    from kxl.train.data import PlanData

    plan = pl.read_parquet(inputs["plan"])
    w_old = int(plan["rank"].max()) + 1
    i = pl.col("micro").cast(pl.Int64) * w_old + pl.col("rank")
    plan = plan.with_columns((i % world).cast(pl.Int16).alias("rank"),
                             (i // world).cast(pl.Int16).alias("micro"))
    return PlanData(plan, pl.read_parquet(inputs["captions"]),
                    pl.read_parquet(inputs["buckets"]), 0, 1)


def test_checkpoint_continues_on_another_layout_with_the_same_w_times_a(tiny_inputs,
                                                                         tmp_path) -> None:
    """Issue 21 section 3: checkpointed under (W=1, A=2), continued under (W=2, A=1). One
    process here, so the sums run in the same order and the result is bit-identical; across
    processes (DDP) it agrees to reduction-order rounding (tests/train/test_ddp.py). Needs
    rng_streams per_sample and a warmup that counts optimizer steps (per_process counts W)."""
    w1a2, w2a1 = _relayout(tiny_inputs, 1), _relayout(tiny_inputs, 2)
    glob = {"warmup_counting": "global"}
    assert w1a2.layout.world_size == 1 and w1a2.layout.micros_per_step == 2
    assert w1a2.prefix_hash(6) == w2a1.prefix_hash(6)
    _train(tiny_inputs, tmp_path / "ref", tmp_path / "ref.safetensors", data=w2a1, **glob)
    _train(tiny_inputs, tmp_path / "run", tmp_path / "three.safetensors", data=w1a2, max_steps=3,
           checkpoint_every=3, **glob)
    msgs: list[str] = []
    _, res = _train(tiny_inputs, tmp_path / "run", tmp_path / "run.safetensors", "auto",
                    msgs.append, data=w2a1, **glob)
    assert res.steps_run == 3 and "resumed from" in msgs[0] and "step-00000003" in msgs[0], msgs
    ref, got = _tensors(tmp_path / "ref.safetensors"), _tensors(tmp_path / "run.safetensors")
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    losses = [(tmp_path / d / "metrics.csv").read_text().splitlines() for d in ("ref", "run")]
    assert [r.split(",")[1] for r in losses[0]] == [r.split(",")[1] for r in losses[1]]


def test_per_rank_streams_do_not_continue_on_another_layout(tiny_inputs, tmp_path) -> None:
    """Under per_rank the noise is keyed by (plan rank, micro): another layout is another run."""
    _train(tiny_inputs, tmp_path / "run", tmp_path / "a.safetensors",
           data=_relayout(tiny_inputs, 1), max_steps=3, checkpoint_every=3, rng_streams="per_rank")
    msgs: list[str] = []
    _, res = _train(tiny_inputs, tmp_path / "run", tmp_path / "b.safetensors", "auto",
                    msgs.append, data=_relayout(tiny_inputs, 2), max_steps=3,
                    rng_streams="per_rank")
    assert res.steps_run == 3 and "plan.world_size=1" in msgs[0], msgs
    # so does a per_process warmup (sd-scripts 0.8.7: the warmup ends after warmup_steps / W)
    _train(tiny_inputs, tmp_path / "pp", tmp_path / "c.safetensors",
           data=_relayout(tiny_inputs, 1), max_steps=3, checkpoint_every=3)
    msgs = []
    _train(tiny_inputs, tmp_path / "pp", tmp_path / "d.safetensors", "auto", msgs.append,
           data=_relayout(tiny_inputs, 2), max_steps=3)
    assert "plan.world_size=1" in msgs[0], msgs


def test_per_sample_streams_do_not_depend_on_the_layout(tiny_inputs) -> None:
    """The randomness of each sample is the same whichever (rank, micro) computes it."""
    from kxl.train.seeding import sample_generators

    a = [torch.randn(3, generator=g) for g in sample_generators(1, 4, 1, 2, "cpu")]
    b = [torch.randn(3, generator=g) for g in sample_generators(1, 4, 1, 2, "cpu")]
    c = [torch.randn(3, generator=g) for g in sample_generators(1, 4, 0, 2, "cpu")]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[0], c[0])
