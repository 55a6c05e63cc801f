"""Subprocess entry for the resume / DDP tests: tiny models, tiny inputs, one training run.

usage: run_tiny.py INPUTS OUT_DIR RESUME CONFIG_JSON   (torchrun-compatible)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

# Run as a script (torchrun), so tests/ is not on the path as under pytest: add it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fixtures_train import build_models, stub_augment

from kxl.config import from_dict
from kxl.train.config import TrainConfig
from kxl.train.data import PixelCache, load_plan_data
from kxl.train.dist import init_world, shutdown
from kxl.train.trainer import Trainer, run


def main() -> None:
    inputs, out, resume, cfg_json = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    cfg = from_dict(TrainConfig, json.loads(cfg_json), "train")
    world = init_world(want_cuda=False)
    data = load_plan_data(
        inputs / "plan.parquet",
        inputs / "captions.parquet",
        inputs / "buckets.parquet",
        world.rank,
        world.size,
    )
    trainer = Trainer(
        build_models("tiny", seed=0),
        data,
        PixelCache(inputs / "cache"),
        cfg,
        1337,
        out,
        world,
        stub_augment,
    )
    run(trainer, resume, out / "lokr.safetensors", log=lambda s: print(s, file=sys.stderr))
    shutdown(world)


if __name__ == "__main__":
    main()
