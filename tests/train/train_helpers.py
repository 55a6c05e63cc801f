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
    }
    cfg.update(over)
    return cfg


def config_json(**over) -> str:
    return json.dumps(tiny_config(**over))
