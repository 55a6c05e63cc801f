"""The GPU check (issue 18 section 6): `python -m benchmarks gpu_check`, <= 8 minutes on one
H100/H200, printing one table. On a machine without CUDA it returns one row saying so.

Random-weight SDXL base 1.0 at its real shapes (kxl.model.sdxl, the shipped configs; frozen
UNet and text encoders in fp16, VAE fp32), the Kohaku preset LoKr, 1024x1024, batch 4,
gradient checkpointing, Lion8bit, as epsilon.yaml trains:
- `autocast` and `full_fp16` rows: seconds per step and img/s after one warm-up step, peak GPU
  memory (`max_memory_allocated`; the original fit batch 4 on a 24 GB RTX 3090), loss finite.
- `resume` row: 3 steps in one run vs 2 steps + checkpoint + resume for the 3rd, with
  deterministic algorithms on; the two final LoKr files compared byte for byte.
- `merge` row: the resumed run's LoKr merged into the random base single file (`kxl merge`'s
  code), its seconds and the number of tensors changed.
Targets (issue 18): >= 15 img/s per H100-class GPU (the original: ~1.3 img/s per 3090), peak
memory at batch 4 <= 24 GB.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3  # warm-up + 2 timed
HW, BATCH = (1024, 1024), 4


def _trainer(models, inputs: dict, out: Path, over: dict, device: str):  # type: ignore[no-untyped-def]
    import torch
    from fixtures_train import stub_augment

    from kxl.config import from_dict
    from kxl.train.config import TrainConfig
    from kxl.train.data import PixelCache, load_plan_data
    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, {
        "lokr": {"preset": str(ROOT / "config/lycoris/kohaku_xl.toml")},
        "lr_unet": 2e-5, "lr_text_encoder": 5e-6, "warmup_steps": 0, "tensorboard": False,
        "gradient_checkpointing": True, "mixed_precision": "fp16", "save_precision": "fp16",
        "caption_tag_dropout": 0.15, **over,
    }, "train")
    data = load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], 0, 1)
    world = World(0, 1, 0, torch.device(device))
    return Trainer(models, data, PixelCache(inputs["cache"]), cfg, 1337, out, world,
                   stub_augment)


def _speed(base, inputs: dict, tmp: Path, full_fp16: bool, device: str = "cuda",  # type: ignore[no-untyped-def]
           batch: int = BATCH) -> dict:
    import torch

    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = _trainer(copy.deepcopy(base), inputs, tmp / f"speed-{full_fp16}",
                       {"full_fp16": full_fp16}, device)
    losses = [trainer.step(0)["loss"]]
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(1, STEPS):
        losses.append(trainer.step(i)["loss"])
    if cuda:
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / (STEPS - 1)
    row = {
        "name": "full_fp16" if full_fp16 else "autocast",
        "seconds": sec,
        "img_per_s": batch / sec,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "loss_finite": all(math.isfinite(x) for x in losses),
        "lokr_dtype": str(trainer.params[0].dtype).removeprefix("torch."),
        "note": f"b{batch}, gradient checkpointing, Lion8bit; seconds per step",
    }
    del trainer
    return row


def _resume(base, inputs: dict, tmp: Path, device: str = "cuda") -> tuple[dict, Path]:  # type: ignore[no-untyped-def]
    from kxl.train.trainer import run

    def train(out: Path, over: dict, resume: str, lokr: str) -> None:
        trainer = _trainer(copy.deepcopy(base), inputs, out, over, device)
        run(trainer, resume, out / lokr, log=lambda _: None)

    t0 = time.perf_counter()
    whole, split = tmp / "whole", tmp / "split"
    # the same settings for both final files: the LoKr's metadata records the train config
    train(whole, {"max_steps": 3, "checkpoint_every": 2}, "none", "lokr.safetensors")
    train(split, {"max_steps": 2, "checkpoint_every": 2}, "none", "first.safetensors")
    train(split, {"max_steps": 3, "checkpoint_every": 2}, "auto", "lokr.safetensors")
    a = (whole / "lokr.safetensors").read_bytes()
    b = (split / "lokr.safetensors").read_bytes()
    return {"name": "resume", "seconds": time.perf_counter() - t0, "bit_identical": a == b,
            "note": "3 steps vs 2 + checkpoint + resume; deterministic algorithms on"}, \
        split / "lokr.safetensors"


def _merge(base_file: Path, lokr: Path, out: Path) -> dict:
    from kxl.merge.merge import merge_files

    t0 = time.perf_counter()
    report = merge_files(base_file, lokr, out, {})
    return {"name": "merge", "seconds": time.perf_counter() - t0,
            "tensors_changed": report.tensors_changed,
            "note": "random SDXL base (fp16 single file) + the resumed LoKr"}


def run(quick: bool) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return [{"name": "gpu_check", "seconds": None, "note": "no CUDA device: skipped"}]
    # cuBLAS needs this before its first call for deterministic algorithms
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    from fixtures_train import Models, write_tiny_inputs
    from transformers import CLIPTokenizer

    from kxl.model.sdxl import random_models, write_config_dir, write_random_base

    device = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_config_dir(tmp / "config")
        nets = random_models(tmp / "config", seed=0, dtype=torch.float16)
        base = Models(nets["unet"], nets["text_encoder"], nets["text_encoder_2"],
                      nets["vae"].float(),  # the trainer keeps the VAE in fp32
                      CLIPTokenizer.from_pretrained(tmp / "config" / "tokenizer"),
                      CLIPTokenizer.from_pretrained(tmp / "config" / "tokenizer_2"))
        inputs = write_tiny_inputs(tmp / "in", steps=STEPS, world=1, accum=1, batch=BATCH,
                                   sizes={0: HW})
        rows = [_speed(base, inputs, tmp, False), _speed(base, inputs, tmp, True)]
        if not quick:
            resume, lokr = _resume(base, inputs, tmp)
            write_random_base(tmp / "base.safetensors", tmp / "config", seed=0, dtype="fp16")
            rows += [resume, _merge(tmp / "base.safetensors", lokr, tmp / "merged.safetensors")]
    return [{**r, "device": device} for r in rows]
