"""One LoKr optimizer step (kxl.train.Trainer.step) on SDXL topology with random weights.

Rows: the tiny test model (CPU, always); with quick=False, the real SDXL dimensions
(UNet 320/640/1280 with transformer depth 1/2/10, CLIP-L 768x12, bigG 1280x32 with projection):
full size (1024x1024, batch 4, fp16 autocast) on CUDA when present, otherwise a reduced step on
CPU: the full depth at 256x256, batch 1 with the frozen weights in bf16 (train.mixed_precision
bf16; its fp32 step needs more than this machine's 24 GB: it was killed for memory even with
activation recomputation), beside the fp32 baseline it replaces: SDXL's widths with transformer
depth 1/2/2 and an 8-layer bigG ("sdxl_shallow"). The SDXL rows recompute activations, as
epsilon.yaml does, and report the process's peak RSS so far. Each step runs once untimed
(allocation, lazy init), then once timed. The Epsilon original: ~49 s per 256-image step on
4x RTX 3090, i.e. ~1.3 img/s per GPU (SPEC section 1).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def _step(scale: str, hw: tuple[int, int], batch: int, device: str, ckpt: bool = False,
          precision: str = "fp16") -> dict:
    import resource

    import torch
    from fixtures_train import build_models, stub_augment, write_tiny_inputs

    from kxl.config import from_dict
    from kxl.train.config import TrainConfig
    from kxl.train.data import PixelCache, load_plan_data
    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    root = Path(__file__).resolve().parents[1]
    cfg = from_dict(
        TrainConfig,
        {
            "lokr": {"preset": str(root / "config/lycoris/kohaku_xl.toml")},
            "tensorboard": False,
            "warmup_steps": 0,
            "caption_tag_dropout": 0.15,
            # as epsilon.yaml: SDXL activations do not fit without recomputation
            "gradient_checkpointing": ckpt,
            "mixed_precision": precision,
        },
        "train",
    )
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_tiny_inputs(
            Path(tmp) / "in", steps=2, world=1, accum=1, batch=batch, sizes={0: hw}
        )
        data = load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], 0, 1)
        world = World(0, 1, 0, torch.device(device))
        trainer = Trainer(
            build_models(scale, seed=0),
            data,
            PixelCache(inputs["cache"]),
            cfg,
            0,
            Path(tmp) / "out",
            world,
            stub_augment,
        )
        trainer.step(0)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.step(1)
        if device == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        n_params = sum(p.numel() for p in trainer.params)
    return {
        "name": f"lokr_step_{scale}_{hw[0]}px_b{batch}_{device}" + ("_gc" if ckpt else "")
        + ("_bf16" if precision == "bf16" else ""),
        "seconds": sec,
        "img_per_s": batch / sec,
        "lokr_params": n_params,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def run(quick: bool) -> list[dict]:
    import torch

    rows = [_step("tiny", (64, 64), 4, "cpu")]
    if not quick:
        if torch.cuda.is_available():
            rows.append(_step("sdxl", (1024, 1024), 4, "cuda", ckpt=True))
        else:
            rows.append(_step("sdxl_shallow", (256, 256), 1, "cpu", ckpt=True))
            full = _step("sdxl", (256, 256), 1, "cpu", ckpt=True, precision="bf16")
            rows.append({**full, "ratio_vs_baseline": full["seconds"] / rows[-1]["seconds"],
                         "note": "baseline: sdxl_shallow fp32 row"})
    return rows
