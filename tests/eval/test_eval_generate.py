"""Generation with diffusers' StableDiffusionXLPipeline from a tiny SGM single file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from kxl.eval.config import GenerateConfig
from kxl.eval.prompts import generation_jobs

CHARS = pl.DataFrame({
    "rank": [0, 1], "tag_id": [10, 11], "gender": ["1girl", "1boy"],
    "character": ["alice_liddell", "bob"], "series": ["wonder", None],
}, schema={"rank": pl.Int32, "tag_id": pl.Int64, "gender": pl.String, "character": pl.String,
           "series": pl.String})


def _run(model: tuple[Path, Path], out: Path, **kw: object) -> pl.DataFrame:
    import torch

    from kxl.eval.generate import generate, load_pipeline

    torch.set_num_threads(1)
    cfg = GenerateConfig(**{"images_per_character": 2, "width": 64, "height": 64, "steps": 2,
                            "sampler": "EulerDiscreteScheduler", "device": "cpu", **kw})
    pipe, device = load_pipeline(str(model[0]), str(model[1]), cfg)
    return generate(pipe, device, generation_jobs(CHARS, cfg, 1337), cfg, out)


def test_generates_pngs_with_prompts_and_seeds(tiny_model: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    from PIL import Image

    table = _run(tiny_model, tmp_path / "a", batch_size=3)
    assert table.height == 4 and table["file"][0] == "png/00000-000.png"
    assert table["prompt"][0].startswith("1girl, alice liddell, wonder, ")
    for row in table.iter_rows(named=True):
        data = (tmp_path / "a" / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        with Image.open(tmp_path / "a" / row["file"]) as im:
            assert im.size == (64, 64)
    assert len(set(table["sha256"])) == 4  # different seeds/prompts, different images


def test_same_seed_same_image_whatever_the_batch(tiny_model: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    a = _run(tiny_model, tmp_path / "a", batch_size=4)
    b = _run(tiny_model, tmp_path / "b", batch_size=1)
    for fa, fb in zip(a["file"], b["file"], strict=True):
        pa = np.asarray(Image.open(tmp_path / "a" / fa), np.int16)
        pb = np.asarray(Image.open(tmp_path / "b" / fb), np.int16)
        assert np.abs(pa - pb).max() <= 2  # batched float maths may move a pixel by 1-2 levels


def test_unknown_sampler_and_missing_model_are_clear_errors(tiny_model: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    from kxl.errors import KxlError
    from kxl.eval.generate import load_pipeline

    with pytest.raises(KxlError, match="'NoSuchScheduler' is not a diffusers scheduler"):
        _run(tiny_model, tmp_path, sampler="NoSuchScheduler")
    with pytest.raises(KxlError, match="model file not found"):
        load_pipeline(str(tmp_path / "nope.safetensors"), str(tiny_model[1]), GenerateConfig())
