"""Shared helpers of the train tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRESET = str(ROOT / "config/lycoris/kohaku_xl.toml")


def tiny_config(**over) -> dict:
    """The train section for tests: the original hyperparameters with a fast warmup and lr."""
    cfg = {
        "lokr": {"preset": PRESET},
        "lr_unet": 1e-3,
        "lr_text_encoder": 2.5e-4,
        "warmup_steps": 2,
        "tensorboard": False,
        "keep_last": 2,
        "caption_shuffle": True,
        "caption_tag_dropout": 0.15,
    }
    cfg.update(over)
    return cfg


def config_json(**over) -> str:
    return json.dumps(tiny_config(**over))


def tiny_trainer(inputs: dict, out: Path, over: dict | None = None, device: str = "cpu"):
    """A Trainer of the tiny model on `inputs` (write_tiny_inputs), rank 0 of 1, on `device`."""
    import torch
    from fixtures_train import build_models, stub_augment

    from kxl.config import from_dict
    from kxl.train.config import TrainConfig
    from kxl.train.data import PixelCache, load_plan_data
    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, tiny_config(**(over or {})), "train")
    data = load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], 0, 1)
    world = World(0, 1, 0, torch.device(device))
    return Trainer(build_models("tiny", seed=0), data, PixelCache(inputs["cache"]), cfg, 1337,
                   out, world, stub_augment)
