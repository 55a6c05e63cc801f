"""The GPU check (`python -m benchmarks gpu_check`) runs only where a GPU is lent, a few minutes
per task: its code path is exercised here on the CPU with the tiny model, so the one chance to
run it is not spent on a crash. What it measures on a GPU (speed, memory) is not checked here;
that it trains, resumes bit for bit and merges is."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for benchmarks/
from benchmarks import gpu_check_bench as gpu_check  # noqa: E402


def test_without_cuda_it_says_so() -> None:
    if torch.cuda.is_available():
        return
    assert gpu_check.run(quick=True) == [
        {"name": "gpu_check", "seconds": None, "note": "no CUDA device: skipped"}]


def test_check_steps_resume_and_merge_on_the_tiny_model(tmp_path: Path) -> None:
    from fixtures_train import build_models, write_tiny_inputs

    from kxl.model.load import save_sdxl_single_file

    base = build_models("tiny", seed=0)
    inputs = write_tiny_inputs(tmp_path / "in", steps=gpu_check.STEPS, world=1, accum=1,
                               batch=2, sizes={0: (64, 64)})
    speed = gpu_check._speed(base, inputs, tmp_path, False, device="cpu", batch=2)
    assert speed["loss_finite"] and speed["img_per_s"] > 0 and speed["lokr_dtype"] == "float32"
    resume, lokr = gpu_check._resume(base, inputs, tmp_path, device="cpu")
    assert resume["bit_identical"] is True
    save_sdxl_single_file(base, tmp_path / "base.safetensors")
    merged = gpu_check._merge(tmp_path / "base.safetensors", lokr, tmp_path / "merged.safetensors")
    # the merged file differs from the base exactly where the LoKr's trained deltas land
    with safe_open(str(tmp_path / "base.safetensors"), "pt") as a, \
            safe_open(str(tmp_path / "merged.safetensors"), "pt") as b:
        differ = sum(not torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())  # noqa: SIM118
    assert 0 < differ <= merged["tensors_changed"]
