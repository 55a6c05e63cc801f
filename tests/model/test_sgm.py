"""SGM <-> diffusers naming against the real SDXL layout (full-size SDXL built on meta)."""

from __future__ import annotations

import pytest
import torch

from kxl.errors import KxlError
from kxl.model import sgm

# Real SDXL module names: diffusers -> SGM/ldm (sd-scripts / ComfyUI / sd-webui naming).
REAL_UNET_MODULES = {
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q":
        "input_blocks.4.1.transformer_blocks.0.attn1.to_q",
    "down_blocks.2.attentions.1.transformer_blocks.9.ff.net.0.proj":
        "input_blocks.8.1.transformer_blocks.9.ff.net.0.proj",
    "down_blocks.0.resnets.0.conv1": "input_blocks.1.0.in_layers.2",
    "down_blocks.0.resnets.1.norm1": "input_blocks.2.0.in_layers.0",
    "down_blocks.1.resnets.0.conv_shortcut": "input_blocks.4.0.skip_connection",
    "down_blocks.0.downsamplers.0.conv": "input_blocks.3.0.op",
    "down_blocks.1.downsamplers.0.conv": "input_blocks.6.0.op",
    "down_blocks.2.resnets.1.time_emb_proj": "input_blocks.8.0.emb_layers.1",
    "mid_block.resnets.0.conv2": "middle_block.0.out_layers.3",
    "mid_block.attentions.0.proj_in": "middle_block.1.proj_in",
    "mid_block.resnets.1.norm2": "middle_block.2.out_layers.0",
    "up_blocks.0.attentions.2.transformer_blocks.0.attn2.to_k":
        "output_blocks.2.1.transformer_blocks.0.attn2.to_k",
    "up_blocks.0.upsamplers.0.conv": "output_blocks.2.2.conv",
    "up_blocks.1.attentions.0.proj_out": "output_blocks.3.1.proj_out",
    "up_blocks.1.upsamplers.0.conv": "output_blocks.5.2.conv",
    "up_blocks.2.resnets.2.norm2": "output_blocks.8.0.out_layers.0",
    "up_blocks.2.resnets.0.conv_shortcut": "output_blocks.6.0.skip_connection",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


@pytest.mark.parametrize(("diffusers", "ldm"), sorted(REAL_UNET_MODULES.items()))
def test_unet_module_names_match_sdxl(diffusers: str, ldm: str) -> None:
    assert sgm.unet_module_to_sgm(diffusers) == ldm
    assert sgm.unet_module_from_sgm(ldm) == diffusers
    assert sgm.unet_module_to_sgm(diffusers + ".weight") == ldm + ".weight"


def test_kohya_names() -> None:
    assert (sgm.unet_module_to_kohya("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q")
            == "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q")
    # transformers >= 5.6 CLIPTextModel has no `text_model.`; sd-scripts names keep it.
    assert (sgm.te_module_to_kohya("encoder.layers.0.self_attn.q_proj", 1)
            == "lora_te1_text_model_encoder_layers_0_self_attn_q_proj")
    assert (sgm.te_module_to_kohya("text_model.encoder.layers.31.mlp.fc2", 2)
            == "lora_te2_text_model_encoder_layers_31_mlp_fc2")
    with pytest.raises(KxlError):
        sgm.te_module_to_kohya("encoder.layers.0.mlp.fc1", 3)


@pytest.mark.parametrize("name", ["down_blocks.3.resnets.0.conv1", "mid_block", "foo.bar"])
def test_unknown_unet_names_raise(name: str) -> None:
    with pytest.raises(KxlError, match="no SGM/diffusers equivalent"):
        sgm.unet_module_to_sgm(name)


@pytest.fixture(scope="module")
def sdxl_meta() -> dict[str, torch.Tensor]:
    """Full-size SDXL base 1.0 (its published diffusers dims) on the meta device -> SGM."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        unet = UNet2DConditionModel(
            sample_size=128, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                               "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
        te1 = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                           num_hidden_layers=12, num_attention_heads=12,
                                           hidden_act="quick_gelu"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
            num_attention_heads=20, projection_dim=1280, hidden_act="gelu"))
        vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4,
                            block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            latent_channels=4)
    models = type("M", (), {"unet": unet, "text_encoder": te1, "text_encoder_2": te2,
                            "vae": vae})()
    return sgm.diffusers_to_sgm_state_dict(models)


# Key names and shapes of the released sd_xl_base_1.0.safetensors (SGM layout).
REAL_SDXL_KEYS = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight": (640, 640),
    "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
    "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
    "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
    "model.diffusion_model.time_embed.0.weight": (1280, 320),
    "model.diffusion_model.middle_block.1.proj_in.weight": (1280, 1280),
    "model.diffusion_model.output_blocks.0.0.skip_connection.weight": (1280, 2560, 1, 1),
    "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.5.2.conv.weight": (640, 640, 3, 3),
    "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
    "conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight":
        (768, 768),
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,),
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight":
        (49408, 768),
    "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (3840, 1280),
    "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_bias": (3840,),
    "conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_fc.weight": (5120, 1280),
    "conditioner.embedders.1.model.transformer.resblocks.0.ln_1.weight": (1280,),
    "conditioner.embedders.1.model.text_projection": (1280, 1280),
    "conditioner.embedders.1.model.positional_embedding": (77, 1280),
    "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
    "conditioner.embedders.1.model.ln_final.bias": (1280,),
    "first_stage_model.encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
    "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
    "first_stage_model.encoder.down.2.downsample.conv.weight": (512, 512, 3, 3),
    "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    "first_stage_model.encoder.norm_out.weight": (512,),
    "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
    "first_stage_model.decoder.up.1.upsample.conv.weight": (256, 256, 3, 3),
    "first_stage_model.decoder.up.3.block.2.conv2.weight": (512, 512, 3, 3),
    "first_stage_model.decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
    "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
    "first_stage_model.post_quant_conv.weight": (4, 4, 1, 1),
}


def test_full_size_sdxl_keys_and_shapes(sdxl_meta: dict[str, torch.Tensor]) -> None:
    for key, shape in REAL_SDXL_KEYS.items():
        assert key in sdxl_meta, key
        assert tuple(sdxl_meta[key].shape) == shape, key
    assert not any(k.endswith("position_ids") for k in sdxl_meta)
    # SGM has no upsampler after the last level and no downsampler after the last level.
    assert not any("input_blocks.9." in k or "output_blocks.8.1." in k for k in sdxl_meta)
    assert not any("encoder.down.3.downsample" in k or "decoder.up.0.upsample" in k
                   for k in sdxl_meta)


def test_full_size_sgm_back_to_diffusers_names(sdxl_meta: dict[str, torch.Tensor]) -> None:
    back = sgm.sgm_to_diffusers(sdxl_meta)
    assert set(back) == set(sgm.COMPONENTS)
    assert "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight" in back["unet"]
    assert back["text_encoder_2"]["text_model.encoder.layers.0.self_attn.v_proj.weight"].shape \
        == (1280, 1280)
    assert back["vae"]["decoder.up_blocks.0.upsamplers.0.conv.weight"].shape == (512, 512, 3, 3)
    assert back["vae"]["encoder.mid_block.attentions.0.to_q.weight"].shape == (512, 512)


def test_split_sgm_rejects_foreign_keys() -> None:
    with pytest.raises(KxlError, match="belongs to no SDXL component"):
        sgm.split_sgm({"cond_stage_model.transformer.x": torch.zeros(1)})
    kept = sgm.split_sgm({"conditioner.embedders.1.model.logit_scale": torch.zeros(())})
    assert all(not v for v in kept.values())
