"""Typed config sections of the base-model stage (`base.synthetic`, `base.huggingface`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticBase:
    """A tiny SDXL: SDXL's topology with small widths, pretrained briefly on CPU."""

    seed: int = 0
    threads: int = 2  # CPU results are bit-exact only for a fixed thread count
    unet_channels: tuple[int, int, int] = (32, 64, 128)
    unet_transformer_layers: tuple[int, int] = (1, 1)  # levels 2 and 3 (SDXL: 2, 10)
    unet_head_dim: int = 32  # SDXL: 64
    te1_width: int = 64  # CLIP-L: 768
    te1_layers: int = 3
    te1_heads: int = 2
    te2_width: int = 128  # bigG: 1280; must differ from te1_width
    te2_layers: int = 4
    te2_heads: int = 2
    # Token embeddings' std at init (HF's CLIP init: 0.02). At 0.02 the random layers' outputs
    # (std ~1) swamp the token in the residual stream and causal attention smears every position
    # into the prompt's running average: two character prompts' contexts differ by 0.25 of
    # their std at the name. At 1.0 the name positions differ by more than the contexts' std, as
    # a trained CLIP keeps tokens apart (docs/character-learning.md).
    te_token_std: float = 1.0
    vae_channels: tuple[int, int, int, int] = (32, 32, 64, 64)
    # GroupNorm groups (SDXL: 32). At tiny widths 32 groups means one channel per group, which
    # normalises every flat colour region to zero: the VAE then cannot carry colour at all.
    norm_groups: int = 8
    vocab_size: int = 4096  # target BPE vocabulary (bytes + merges + 2 specials)
    image_size: int = 64  # UNet pretraining resolution (latents image_size/8)
    vae_crop: int = 32  # VAE pretraining crop (fully convolutional, so crops suffice)
    vae_steps: int = 60
    vae_batch: int = 8
    vae_lr: float = 1e-3
    unet_steps: int = 160
    unet_batch: int = 8
    unet_pool: int = 2048  # procedural pictures encoded once for the UNet-only steps
    unet_caption_dropout: float = 0.1  # empty-caption share (the unconditional model for CFG)
    unet_lr: float = 5e-4


@dataclass(frozen=True)
class HuggingfaceBase:
    """The real base: one pinned single file plus SDXL's diffusers configs and tokenizers."""

    repo_id: str
    filename: str
    revision: str
    sha256: str | None
    config_repo_id: str
    config_revision: str
