"""Small hand-made SGM single files and kohya LoKr files (no diffusers needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

U, T1, T2 = "model.diffusion_model.", "conditioner.embedders.0.transformer.", \
    "conditioner.embedders.1.model."
BASE_SHAPES = {
    U + "input_blocks.1.0.in_layers.2.weight": (8, 8, 3, 3),
    U + "input_blocks.1.0.in_layers.2.bias": (8,),
    U + "middle_block.1.proj_in.weight": (16, 16),
    U + "output_blocks.2.1.transformer_blocks.0.attn1.to_q.weight": (16, 16),
    U + "out.0.weight": (8,),
    U + "out.0.bias": (8,),
    T1 + "text_model.encoder.layers.0.mlp.fc1.weight": (32, 16),
    T2 + "transformer.resblocks.0.attn.in_proj_weight": (48, 16),
    T2 + "transformer.resblocks.0.attn.in_proj_bias": (48,),
    T2 + "transformer.resblocks.0.ln_1.weight": (16,),
    T2 + "transformer.resblocks.0.ln_1.bias": (16,),
    "first_stage_model.decoder.conv_in.weight": (4, 4, 3, 3),
}


def make_base(path: Path, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    g = torch.Generator().manual_seed(seed)
    save_file({k: torch.randn(s, generator=g).to(dtype) for k, s in BASE_SHAPES.items()},
              str(path))
    return path


def lokr_tensors(c: float = 1.0, seed: int = 1) -> dict[str, torch.Tensor]:
    """Full-matrix and low-rank (alpha != dim) LoKr modules + a norm, kohya-named.
    `c` rescales the factors (w1 * c, w2 / c): the same adapter."""
    g = torch.Generator().manual_seed(seed)

    def r(*s: int) -> torch.Tensor:
        return torch.randn(s, generator=g) * 0.1

    out = {
        "lora_unet_input_blocks_1_0_in_layers_2.lokr_w1": r(2, 2) * c,  # conv, full
        "lora_unet_input_blocks_1_0_in_layers_2.lokr_w2": r(4, 4, 3, 3) / c,
        "lora_unet_input_blocks_1_0_in_layers_2.alpha": torch.tensor(10000.0),
        "lora_unet_middle_block_1_proj_in.lokr_w1": r(4, 4) * c,  # linear, low rank, alpha 3
        "lora_unet_middle_block_1_proj_in.lokr_w2_a": r(4, 2) / c,
        "lora_unet_middle_block_1_proj_in.lokr_w2_b": r(2, 4),
        "lora_unet_middle_block_1_proj_in.alpha": torch.tensor(3.0),
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lokr_w1": r(4, 2) * c,
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lokr_w2": r(8, 8) / c,
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(10000.0),
        "lora_unet_out_0.w_norm": r(8),
        "lora_unet_out_0.b_norm": r(8),
    }
    for p in "qkv":  # te2 q/k/v land in rows of OpenCLIP's fused in_proj_weight
        out[f"lora_te2_text_model_encoder_layers_0_self_attn_{p}_proj.lokr_w1"] = r(4, 4) * c
        out[f"lora_te2_text_model_encoder_layers_0_self_attn_{p}_proj.lokr_w2"] = r(4, 4) / c
    return out


def make_lokr(path: Path, c: float = 1.0, seed: int = 1) -> Path:
    save_file(lokr_tensors(c, seed), str(path))
    return path


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    from kxl.merge.merge import merge_files

    base = make_base(tmp_path / "base.safetensors")
    lokr = make_lokr(tmp_path / "lokr.safetensors")
    merged = tmp_path / "merged.safetensors"
    merge_files(base, lokr, merged, {"kxl.stage": "merge"})
    return {"base": base, "lokr": lokr, "merged": merged, "root": tmp_path}
