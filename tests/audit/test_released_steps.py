"""The released step series (issue 20 section 1): every released LyCORIS step file is pinned in
epsilon.yaml with its step, the rebuilt run keeps a checkpoint at each, and each step's
comparison is a target (`released-step-<step>`), fed by rule step_lokr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from kxl.audit.config import STEP_LOKR, all_pairs, step_pairs
from kxl.config_check import config_problem, merge_configs
from kxl.errors import KxlError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "train"))
from train_helpers import tiny_trainer  # noqa: E402

EPSILON = yaml.safe_load((ROOT / "config/epsilon.yaml").read_text())
# The model card's repo: LyCORIS step files every 1700 steps up to 18700 (11 of them).
RELEASED_STEPS = [1700 * k for k in range(1, 12)]


def test_epsilon_pins_every_released_step_and_keeps_a_checkpoint_there() -> None:
    released = EPSILON["audit"]["released"]
    steps = {raw["step"]: raw for raw in released.values() if "step" in raw}
    assert sorted(steps) == RELEASED_STEPS
    for step, raw in steps.items():
        assert raw["filename"] == f"intermediate/kohaku-xl-epsilon-lyco-step{step:08d}.safetensors"
    assert set(RELEASED_STEPS) <= set(EPSILON["train"]["checkpoint_steps"])
    # an override: the workflow validates it merged over config/config.yaml
    default = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert config_problem(merge_configs(default, EPSILON), ROOT / "config/schema.yaml") is None


def test_each_released_step_is_a_diff_target() -> None:
    pairs = all_pairs(EPSILON["audit"])
    got = {n: p for n, p in pairs.items() if n.startswith("released-step-")}
    assert sorted(got) == [f"released-step-{s:08d}" for s in RELEASED_STEPS]
    assert got["released-step-00013600"] == {
        "a": "results/train/steps/step-00013600.safetensors", "b": "epsilon-lyco-step00013600"}
    assert set(EPSILON["audit"]["diffs"]) <= set(pairs)  # the configured ones stay


def test_full_run_dry_run_lists_the_step_comparisons(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["snakemake", "-n", "--quiet", "rules", "--configfile", "config/epsilon.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(line.split()[:2] for line in proc.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["step_lokr"] == "11"
    assert counts["audit_series"] == "2"  # audit.series: epsilon (released vs rebuilt), rebuilt
    assert int(counts["audit_diff"]) == 11 + len(EPSILON["audit"]["diffs"])


def test_a_released_step_without_a_checkpoint_or_a_clashing_name_is_one_line() -> None:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["audit"]["released"] = {"r": {"repo_id": "o/r", "filename": "f.safetensors",
                                      "revision": "main", "step": 5}}
    problem = config_problem(cfg, ROOT / "config/schema.yaml")
    assert problem == ("audit.released.r.step: 5 is not in train.checkpoint_steps [200, 400, "
                       "600, 800] (the rebuilt run needs a checkpoint there to compare)")
    cfg["train"]["checkpoint_steps"] = [5, 200]
    assert config_problem(cfg, ROOT / "config/schema.yaml") is None
    cfg["audit"]["diffs"]["released-step-00000005"] = {"a": "x", "b": "y"}
    assert "is the name of a released-step comparison" in config_problem(
        cfg, ROOT / "config/schema.yaml")
    with pytest.raises(KxlError):
        all_pairs(cfg["audit"])
    assert step_pairs({"r": {"step": 5}}) == {
        "released-step-00000005": {"a": STEP_LOKR.format(step=5), "b": "r"}}


def test_step_lokr_exports_the_checkpoint_in_the_save_precision(tmp_path) -> None:
    from fixtures_train import write_tiny_inputs

    from kxl.train.checkpoint import export_step_lokr
    from kxl.train.trainer import run

    tiny_inputs = write_tiny_inputs(tmp_path / "in", steps=4, world=1, accum=1, batch=2)

    out = tmp_path / "train"
    run(tiny_trainer(tiny_inputs, out, {"max_steps": 3, "checkpoint_steps": [2],
                                        "keep_last": 1}),
        "none", tmp_path / "final.safetensors", log=lambda _: None)
    ckpt = load_file(str(out / "checkpoints/step-00000002/lokr.safetensors"))
    got = tmp_path / "step2.safetensors"
    export_step_lokr(out / "checkpoints", 2, got, "fp16")
    exported = load_file(str(got))
    assert exported.keys() == ckpt.keys()
    assert all(exported[k].dtype == torch.float16 and torch.equal(exported[k], ckpt[k].half())
               for k in ckpt)

    with pytest.raises(KxlError, match=r"no checkpoint at step 1 \(have \[2\]\)"):
        export_step_lokr(out / "checkpoints", 1, tmp_path / "x.safetensors", "fp16")
    f = out / "checkpoints/step-00000002/lokr.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(KxlError, match="sha256 mismatch"):
        export_step_lokr(out / "checkpoints", 2, tmp_path / "y.safetensors", "fp16")
    assert not (tmp_path / "y.safetensors").exists()
