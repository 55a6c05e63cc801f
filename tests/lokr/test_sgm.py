"""The adapter's kohya names come from kxl.model.sgm (the project's one diffusers <-> SGM
mapping); checked against diffusers' own SGM converter and known sd-scripts names."""

from __future__ import annotations

import pytest
import torch

from kxl.errors import KxlError
from kxl.lokr.keys import lora_name_map, te_kohya_names, unet_sgm_names
from kxl.model.sgm import te_module_to_kohya, unet_module_to_kohya, unet_module_to_sgm


@pytest.mark.parametrize(
    ("diffusers", "sgm"),
    [
        ("conv_in", "input_blocks.0.0"),
        ("time_embedding.linear_2", "time_embed.2"),
        ("add_embedding.linear_1", "label_emb.0.0"),
        ("down_blocks.0.resnets.1.conv1", "input_blocks.2.0.in_layers.2"),
        ("down_blocks.0.downsamplers.0.conv", "input_blocks.3.0.op"),
        ("down_blocks.1.resnets.0.conv_shortcut", "input_blocks.4.0.skip_connection"),
        (
            "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
            "input_blocks.4.1.transformer_blocks.0.attn1.to_q",
        ),
        ("down_blocks.2.attentions.1.proj_out", "input_blocks.8.1.proj_out"),
        ("mid_block.resnets.1.time_emb_proj", "middle_block.2.emb_layers.1"),
        ("mid_block.attentions.0.norm", "middle_block.1.norm"),
        ("up_blocks.0.resnets.2.norm2", "output_blocks.2.0.out_layers.0"),
        ("up_blocks.0.upsamplers.0.conv", "output_blocks.2.2.conv"),
        ("up_blocks.1.attentions.2.proj_in", "output_blocks.5.1.proj_in"),
        ("up_blocks.2.resnets.0.conv2", "output_blocks.6.0.out_layers.3"),
        ("conv_norm_out", "out.0"),
        ("conv_out", "out.2"),
    ],
)
def test_known_names(diffusers: str, sgm: str) -> None:
    assert unet_module_to_sgm(diffusers) == sgm


def test_unknown_name_is_named() -> None:
    with pytest.raises(KxlError, match="nonsense"):
        unet_module_to_sgm("nonsense.block")


def test_every_weight_roundtrips_through_diffusers_converter(tiny_models) -> None:
    """SGM keys built from our names convert back to the identical diffusers state dict."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = tiny_models.unet
    names = unet_sgm_names(unet)
    sgm_sd = {}
    for key, value in unet.state_dict().items():
        module, _, param = key.rpartition(".")
        sgm_sd[f"model.diffusion_model.{names[module]}.{param}"] = value
    back = convert_ldm_unet_checkpoint(sgm_sd, dict(unet.config))
    ref = unet.state_dict()
    assert set(back) == set(ref)
    for k, v in ref.items():
        assert torch.equal(back[k].reshape(v.shape), v), k


def test_lora_names_are_the_model_mapping(tiny_models) -> None:
    """Every kohya name the adapter uses is kxl.model.sgm's, and the dotted trees of
    kohya_views spell the same names (so LyCORIS loads the file under those keys)."""
    tes = [tiny_models.text_encoder, tiny_models.text_encoder_2]
    names = lora_name_map(tiny_models.unet, tes)
    unet = unet_sgm_names(tiny_models.unet)
    assert len(unet) > 100
    for d, s in unet.items():
        assert names[f"lora_unet_{d}".replace(".", "_")] == unet_module_to_kohya(d), d
        assert unet_module_to_kohya(d) == "lora_unet_" + s.replace(".", "_"), d
    for i, te in enumerate(tes, start=1):
        for d, k in te_kohya_names(te).items():
            assert te_module_to_kohya(d, i) == f"lora_te{i}_" + k.replace(".", "_"), d
    # transformers 5's CLIPTextModel has no `text_model.` level: kohya's names add it back
    assert names["lora_te1_encoder_layers_0_self_attn_q_proj"] == (
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    )
