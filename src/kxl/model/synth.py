"""`synth-base`: build, pretrain and save the tiny SDXL of the default run."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from kxl.atomic import atomic_dir
from kxl.model import pretrain, tiny, tokenizer
from kxl.model.config import SyntheticBase
from kxl.model.load import load_sdxl, save_sdxl_single_file

TAGS_SCHEMA = {"id": pl.Int64, "name": pl.String, "type": pl.Int8, "popularity": pl.Int64}


def caption_texts(tags: pl.DataFrame) -> list[str]:
    """Tag names as captions spell them (HakuBooru: underscores become spaces for names
    longer than 3 characters, short emoticons keep them) plus the special tags and the
    pretraining captions, as the tokenizer's training corpus."""
    names = tags.select(
        pl.when(pl.col("name").str.len_chars() > 3)
        .then(pl.col("name").str.replace_all("_", " ", literal=True))
        .otherwise(pl.col("name"))
    ).to_series().to_list()
    return [", ".join(tokenizer.SPECIAL_TAGS), *pretrain.caption_words(), *names]


def phase_generator(seed: int, phase: int) -> torch.Generator:
    """An independent generator per pretraining phase, derived from the config seed."""
    state = np.random.SeedSequence([seed, phase]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _build_and_pretrain(cfg: SyntheticBase, tags: pl.DataFrame, config_tmp: Path,
                        weights_tmp: Path) -> dict[str, Any]:
    """Write the configs into `config_tmp` and the pretrained single file to `weights_tmp`
    (loaded back through diffusers, every tensor checked); returns the report."""
    from transformers import CLIPTokenizer

    ids = tokenizer.build_tokenizers(config_tmp, caption_texts(tags), cfg.vocab_size)
    models = tiny.build_models(cfg, ids)
    recon_before = pretrain.vae_recon_loss(models.vae, cfg.seed, 16, cfg.image_size)
    vae_losses = pretrain.train_vae(
        models.vae, np.random.default_rng([cfg.seed, 1]), phase_generator(cfg.seed, 1),
        cfg.vae_steps, cfg.vae_batch, cfg.image_size, cfg.vae_crop, cfg.vae_lr)
    recon_after = pretrain.vae_recon_loss(models.vae, cfg.seed, 16, cfg.image_size)
    # Like SD's 0.18215 and SDXL's 0.13025: the factor that gives the trained VAE's latents
    # unit variance, so the noise schedule's SNRs mean what they mean for SDXL. Stored in
    # vae/config.json, which diffusers (sampling) and kxl train (train.vae_scale: null) read.
    scale = pretrain.latent_scaling_factor(models.vae, cfg.seed, 64, cfg.image_size)
    models.vae.register_to_config(scaling_factor=scale)
    tiny.write_config_dir(config_tmp, models)
    encode = pretrain.sdxl_text_encoder(
        CLIPTokenizer.from_pretrained(config_tmp / "tokenizer"),
        CLIPTokenizer.from_pretrained(config_tmp / "tokenizer_2"),
        models.text_encoder, models.text_encoder_2)
    unet_losses: list[float] = []
    advantage: dict[str, float] = {}
    if cfg.unet_steps:
        gen = phase_generator(cfg.seed, 2)
        pool = pretrain.encode_pool(models.vae, encode, gen, cfg.unet_pool, cfg.image_size)
        unet_losses = pretrain.train_unet(models.unet, pool, gen, cfg.unet_steps,
                                          cfg.unet_batch, cfg.image_size, cfg.unet_lr,
                                          cfg.unet_caption_dropout)
        advantage = pretrain.caption_advantage(models.unet, models.vae, encode, cfg.seed,
                                               64, cfg.image_size)
    report = {
        "params": tiny.param_counts(models), "vocab_size": ids["vocab_size"],
        "vae_recon_mse": [recon_before, recon_after], "vae_scaling_factor": scale,
        "vae_train_mse_first_last": [vae_losses[0], vae_losses[-1]] if vae_losses else [],
        "unet_loss_first_last": [unet_losses[0], unet_losses[-1]] if unet_losses else [],
        "unet_loss_last10": float(np.mean(unet_losses[-10:])) if unet_losses else None,
        "unet_caption_advantage": advantage,
    }
    meta = {"kxl.stage": "base", "kxl.source": "synthetic",
            "kxl.config": json.dumps(dataclasses.asdict(cfg), sort_keys=True),
            "kxl.pretrain": json.dumps(report, sort_keys=True),
            "modelspec.architecture": "stable-diffusion-xl-v1-base"}
    save_sdxl_single_file(models, weights_tmp, meta)
    load_sdxl(weights_tmp, config_tmp)  # it must load through diffusers, every tensor checked
    return report


def synthesize_base(
    cfg: SyntheticBase, tags: pl.DataFrame, out: Path, config_dir: Path
) -> dict[str, Any]:
    """Write `config_dir` (diffusers configs + tokenizers) and `out` (the SGM single file);
    returns a report (dims, parameter counts, losses, wall time)."""
    start = time.perf_counter()
    tiny.check_dims(cfg)
    # diffusers picks the loader by suffix: keep ".safetensors" last (never the pickle path).
    tmp_out = out.with_name(f".{out.stem}.unverified-{os.getpid()}{out.suffix}")
    try:
        with atomic_dir(config_dir) as tmp:
            report = _build_and_pretrain(cfg, tags, tmp, tmp_out)
            os.replace(tmp_out, out)
    finally:
        tmp_out.unlink(missing_ok=True)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    return report
