"""The tiny SDXL of the default run: SDXL's topology, small widths, diffusers configs.

Topology kept from SDXL (what the SGM layout and the LoKr preset depend on): UNet with 3
levels, 2 resnets per level, cross-attention transformers in levels 2-3 and the middle,
`text_time` size conditioning (6 numbers, 256-dim sinusoids each), linear transformer
projections; CLIP-L-like text encoder 1 (quick_gelu) and bigG-like text encoder 2 (gelu, with
projection) of DIFFERENT widths (diffusers tells them apart by width); a 4-level VAE
(downsample x8, 4 latent channels, scaling factor 0.13025). Only widths and depths shrink.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kxl.atomic import write_json
from kxl.errors import KxlError
from kxl.model.config import SyntheticBase

SDXL_VAE_SCALE = 0.13025
TIME_EMBED_DIM = 256  # SDXL's addition_time_embed_dim
N_SIZE_CONDS = 6  # original (h, w), crop (top, left), target (h, w)
# SDXL base 1.0's scheduler (sd-scripts trains with DDPM scaled_linear 0.00085..0.012, 1000).
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "steps_offset": 1,
    "timestep_spacing": "leading", "interpolation_type": "linear", "use_karras_sigmas": False,
    "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
    "clip_sample": False,
}
MODEL_INDEX: dict[str, Any] = {
    "_class_name": "StableDiffusionXLPipeline",
    "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


@dataclass(frozen=True)
class TinyModels:
    unet: Any
    text_encoder: Any
    text_encoder_2: Any
    vae: Any


def check_dims(cfg: SyntheticBase) -> None:
    """Reject widths the architecture cannot take, naming the config key."""
    where = "config base.synthetic"
    if len(cfg.unet_channels) != 3 or len(cfg.vae_channels) != 4:
        raise KxlError(f"{where}: unet_channels needs 3 and vae_channels 4 entries (SDXL topology)")
    for key in ("unet_channels", "vae_channels"):
        bad = [c for c in getattr(cfg, key) if c % cfg.norm_groups]
        if bad:
            raise KxlError(f"{where}.{key}: {bad} not multiples of norm_groups {cfg.norm_groups}")
    if cfg.unet_channels[1] % cfg.unet_head_dim or cfg.unet_channels[2] % cfg.unet_head_dim:
        raise KxlError(f"{where}.unet_head_dim {cfg.unet_head_dim} must divide unet_channels[1:]")
    if cfg.te1_width == cfg.te2_width:
        raise KxlError(f"{where}: te1_width and te2_width must differ, or diffusers loads "
                       "text encoder 1's weights into slot 2")
    for w, h, k in ((cfg.te1_width, cfg.te1_heads, "te1"), (cfg.te2_width, cfg.te2_heads, "te2")):
        if w % h:
            raise KxlError(f"{where}.{k}_heads {h} must divide {k}_width {w}")
    if cfg.image_size % 8 or cfg.vae_crop % 8:
        raise KxlError(f"{where}: image_size and vae_crop must be multiples of 8")


def unet_config(cfg: SyntheticBase) -> dict[str, Any]:
    c = list(cfg.unet_channels)
    return {
        "sample_size": cfg.image_size // 8, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "block_out_channels": c, "layers_per_block": 2,
        "transformer_layers_per_block": [1, *cfg.unet_transformer_layers],
        # diffusers' SDXL config calls the head COUNT attention_head_dim ([5, 10, 20]).
        "attention_head_dim": [max(1, ch // cfg.unet_head_dim) for ch in c],
        "cross_attention_dim": cfg.te1_width + cfg.te2_width,
        "use_linear_projection": True, "norm_num_groups": cfg.norm_groups,
        "addition_embed_type": "text_time", "addition_time_embed_dim": TIME_EMBED_DIM,
        "projection_class_embeddings_input_dim": cfg.te2_width + N_SIZE_CONDS * TIME_EMBED_DIM,
    }


def vae_config(cfg: SyntheticBase) -> dict[str, Any]:
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": list(cfg.vae_channels), "layers_per_block": 2,
        "norm_num_groups": cfg.norm_groups, "sample_size": cfg.image_size,
        "scaling_factor": SDXL_VAE_SCALE,
        "force_upcast": True,
    }


def text_config(cfg: SyntheticBase, which: int, ids: dict[str, int]) -> dict[str, Any]:
    width, layers, heads = ((cfg.te1_width, cfg.te1_layers, cfg.te1_heads) if which == 1
                            else (cfg.te2_width, cfg.te2_layers, cfg.te2_heads))
    return {
        "vocab_size": ids["vocab_size"], "hidden_size": width, "intermediate_size": 4 * width,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "max_position_embeddings": 77, "projection_dim": width,
        # CLIP-L uses quick_gelu, OpenCLIP bigG exact gelu.
        "hidden_act": "quick_gelu" if which == 1 else "gelu",
        # The pooled output is read at the first eos: the ids must be this tokenizer's.
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"],
        "pad_token_id": ids["eos"] if which == 1 else ids["pad2"],
    }


def build_models(cfg: SyntheticBase, ids: dict[str, int]) -> TinyModels:
    """Fresh models, initialised from `cfg.seed` without touching the caller's global RNG."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    check_dims(cfg)
    # torch's module initialisers draw from the global generator; fork it so the seed is local.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = UNet2DConditionModel(**unet_config(cfg))
        te1 = CLIPTextModel(CLIPTextConfig(**text_config(cfg, 1, ids)))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**text_config(cfg, 2, ids)))
        vae = AutoencoderKL(**vae_config(cfg))
    with torch.no_grad():  # a deterministic rescale of the seeded draw (see SyntheticBase)
        for te in (te1, te2):
            emb = te.get_input_embeddings().weight
            emb.mul_(cfg.te_token_std / emb.std())
    return TinyModels(unet, te1, te2, vae)


def write_config_dir(out: Path, models: TinyModels) -> None:
    """The diffusers layout without weights: model_index, per-model configs, scheduler.
    (Tokenizer files are written beside them by kxl.model.tokenizer.)"""
    from diffusers import EulerDiscreteScheduler

    models.unet.save_config(out / "unet")
    models.vae.save_config(out / "vae")
    for name in ("text_encoder", "text_encoder_2"):
        cfg = getattr(models, name).config.to_dict()
        cfg["architectures"] = [type(getattr(models, name)).__name__]
        for volatile in ("_name_or_path", "transformers_version", "output_attentions"):
            cfg.pop(volatile, None)
        write_json(out / name / "config.json", cfg)
    EulerDiscreteScheduler.from_config(SCHEDULER_CONFIG).save_config(out / "scheduler")
    write_json(out / "model_index.json", MODEL_INDEX)


def param_counts(models: TinyModels) -> dict[str, int]:
    return {n: sum(p.numel() for p in getattr(models, n).parameters())
            for n in ("unet", "text_encoder", "text_encoder_2", "vae")}


def dims_summary(cfg: SyntheticBase, ids: dict[str, int]) -> str:
    return json.dumps({"unet": unet_config(cfg), "vae": vae_config(cfg),
                       "te1": text_config(cfg, 1, ids), "te2": text_config(cfg, 2, ids)})
