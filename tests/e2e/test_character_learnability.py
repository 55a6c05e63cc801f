"""Issue 3: the synthetic characters' looks (palette, shapes, layout) are learnable by the tiny
diffusion model in a few hundred CPU steps.

The default run's base UNet trains on the six eval characters' posts, each captioned with its
character's generation prompt (text encoders frozen), and the conditioning probe of
`kxl ccip-conditioning` then reads held-out references: the right prompt must give the lowest
denoising error for most of them. The references themselves are never trained on. The pipeline's own
LoKr run gets there as well (tests/e2e/test_model_pipeline.py), more slowly: with 3 epochs of
8 pictures per step (docs/character-learning.md)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from pipeline_run import Workflow

from kxl.eval import conditioning as probe
from kxl.eval.config import ConditioningConfig

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 200  # 32 pictures each: ~1,000 per character, ~2 minutes on 2 cores
LR = 2e-3  # AdamW, cosine decay to 0
SIZE = 64  # the base's training resolution and the eval's generation size


def probe_errors(pipe, pixels: np.ndarray, prompts: list[str], labels: np.ndarray) -> dict:  # type: ignore[no-untyped-def]
    cands = probe.candidates(labels, len(prompts), len(prompts) - 1, 1337)
    timesteps = ConditioningConfig().timesteps  # the probe's own
    errors = probe.denoising_errors(pipe, "cpu", pixels, prompts, cands, timesteps, 1337, 48)
    return probe.advantage(errors.mean(axis=0))


def train_and_probe(res, seed: int = 0) -> tuple[dict, dict, list[float]]:  # type: ignore[no-untyped-def]
    """Probe before and after STEPS steps of training the base UNet on the six characters."""
    from kxl.eval.config import GenerateConfig
    from kxl.eval.generate import load_pipeline
    from kxl.model import pretrain

    chars = pl.read_parquet(res / "eval/ccip/characters.parquet")
    refs = pl.read_parquet(res / "eval/ccip/refs.parquet")
    gen_prompts = pl.read_parquet(res / "eval/ccip/generated/base/images.parquet")
    prompts, labels, ref_files = probe.probe_set(chars, refs, gen_prompts, 8)

    # Training pictures: the six characters' posts, their references left out.
    posts = (pl.read_parquet(res / "manifest/kept.parquet").select("id", "tags_character")
             .with_columns(pl.col("tags_character").list.first().alias("tag_id"))
             .join(chars.select("tag_id", "rank"), on="tag_id"))
    train = (pl.read_parquet(res / "images/dataset.parquet").join(posts, on="id")
             .filter(~pl.col("file").is_in(refs["file"].implode())).sort("id"))
    assert train["rank"].n_unique() == chars.height and train.height >= 150, train.height

    torch.manual_seed(seed)
    pipe, _ = load_pipeline(str(res / "base/base.safetensors"), str(res / "base/config"),
                            GenerateConfig(device="cpu"))
    pipe.vae.to(torch.float32)
    ref_pixels = probe.reference_pixels(ref_files, res / "images", SIZE, SIZE)
    before = probe_errors(pipe, ref_pixels, prompts, labels)

    train_pixels = probe.reference_pixels(train["file"].to_list(), res / "images", SIZE, SIZE)
    latents = probe.posterior_means(pipe.vae, train_pixels, "cpu", 64)
    with torch.no_grad():
        ctx, _, pooled, _ = pipe.encode_prompt(prompts, device="cpu",
                                               do_classifier_free_guidance=False)
        null_ctx, _, null_pooled, _ = pipe.encode_prompt([""], device="cpu",
                                                         do_classifier_free_guidance=False)
    y = torch.from_numpy(train["rank"].to_numpy().copy())
    pool = pretrain.UnetPool(latents, ctx[y], pooled[y], null_ctx, null_pooled)
    losses = pretrain.train_unet(pipe.unet, pool, torch.Generator().manual_seed(seed), STEPS,
                                 32, SIZE, LR, 0.1)
    return before, probe_errors(pipe, ref_pixels, prompts, labels), losses


def test_eval_characters_are_learnable_in_a_few_hundred_cpu_steps(default_run: Workflow) -> None:
    before, after, losses = train_and_probe(default_run.root / "results")

    assert before["top1"] < 0.35 and abs(before["advantage"]) < 0.005, before  # not known yet
    # Thresholds from the spread, not one run (issue 21): top-1 is the stable signal, the mean
    # advantage is not. Seeds 0/1/2 of this training on one default run (AVX2, 2 cores): top-1
    # 0.65/0.58/0.60, advantage +2.2%/+0.4%/+0.5%; seed 0 on an AVX512 machine's default run:
    # 0.50, +1.2%; before training 0.08-0.10, -0.06%. Chance is 1/6.
    assert after["top1"] >= 0.4, (before, after, losses[-5:])  # 2.4x chance
    assert after["advantage"] > 0.0, (before, after)  # the right prompt denoises better
