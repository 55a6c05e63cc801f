"""A test-size tiny SDXL, built once per session (a few seconds on 2 cores)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest
from torch_state import torch_state

from kxl.model.config import SyntheticBase
from kxl.tables import write_table

# Even smaller than the default run: same topology, fewer channels and steps.
TEST_CFG = SyntheticBase(
    seed=3, threads=2, unet_channels=(32, 32, 64), unet_transformer_layers=(1, 2),
    unet_head_dim=32, te1_width=32, te1_layers=2, te1_heads=2, te2_width=64, te2_layers=2,
    te2_heads=2, vae_channels=(32, 32, 32, 32), vocab_size=1200, image_size=32, vae_crop=16,
    vae_steps=12, vae_batch=4, vae_lr=2e-3, unet_steps=3, unet_batch=2, unet_lr=5e-4,
    unet_pool=8,
)
TAG_NAMES = [
    "1girl", "solo", "long_hair", "smile", "^_^", ":d", ">_<", "x_x", "hatsune_miku",
    "vocaloid", "kirisame_marisa_(cosplay)", "touhou", "blue_eyes", "school_uniform",
    "artist_name", "highres", "absurdres", "o_o",
]


@dataclasses.dataclass(frozen=True)
class BuiltBase:
    root: Path
    tags: Path
    model: Path
    config_dir: Path
    report: dict


def write_tags(path: Path) -> Path:
    from kxl.model.synth import TAGS_SCHEMA

    n = len(TAG_NAMES)
    df = pl.DataFrame(
        {"id": range(1, n + 1), "name": TAG_NAMES, "type": [0] * n, "popularity": [10] * n},
        schema=TAGS_SCHEMA,
    )
    write_table(df, path, TAGS_SCHEMA)
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> BuiltBase:
    from kxl.determinism import deterministic_torch
    from kxl.model.synth import synthesize_base
    from kxl.tables import read_table

    root = tmp_path_factory.mktemp("base")
    tags = write_tags(root / "tags.parquet")
    with torch_state():
        deterministic_torch(TEST_CFG.threads)
        report = synthesize_base(TEST_CFG, read_table(tags), root / "base.safetensors",
                                 root / "config")
    return BuiltBase(root, tags, root / "base.safetensors", root / "config", report)


