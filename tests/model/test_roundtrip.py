"""Every tensor survives diffusers -> SGM single file -> diffusers' from_single_file."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from torch_state import torch_state

from kxl.model import sgm, tiny
from kxl.model.load import load_sdxl, save_sdxl_single_file
from kxl.safetensors_header import read_header

from .conftest import TEST_CFG, BuiltBase


@pytest.fixture(scope="module")
def fresh(tiny_base: BuiltBase, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Random tiny models (another seed) saved with the base's configs."""
    import dataclasses

    cfg_json = json.loads((tiny_base.config_dir / "text_encoder" / "config.json").read_text())
    cfg2 = json.loads((tiny_base.config_dir / "text_encoder_2" / "config.json").read_text())
    ids = {"vocab_size": cfg_json["vocab_size"], "bos": cfg_json["bos_token_id"],
           "eos": cfg_json["eos_token_id"], "pad2": cfg2["pad_token_id"]}
    models = tiny.build_models(dataclasses.replace(TEST_CFG, seed=99), ids)
    path = tmp_path_factory.mktemp("fresh") / "fresh.safetensors"
    save_sdxl_single_file(models, path, {"k": "v"})
    return models, path


def test_every_tensor_round_trips_per_component(fresh, tiny_base: BuiltBase) -> None:  # type: ignore[no-untyped-def]
    from diffusers import AutoencoderKL, UNet2DConditionModel

    models, path = fresh
    cdir = str(tiny_base.config_dir)
    loaded = {
        "unet": UNet2DConditionModel.from_single_file(
            str(path), config=cdir, subfolder="unet", local_files_only=True),
        "vae": AutoencoderKL.from_single_file(
            str(path), config=cdir, subfolder="vae", local_files_only=True),
    }
    comps = load_sdxl(path, tiny_base.config_dir)
    loaded["text_encoder"], loaded["text_encoder_2"] = comps.text_encoder, comps.text_encoder_2
    for name in sgm.COMPONENTS:
        want = getattr(models, name).state_dict()
        got = loaded[name].state_dict()
        assert set(got) == set(want), name
        for key, value in want.items():
            assert torch.equal(got[key], value), f"{name}.{key}"
        assert torch.equal(getattr(comps, name).state_dict()[next(iter(want))],
                           want[next(iter(want))])


def test_own_reverse_conversion_is_exact(fresh) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    models, path = fresh
    back = sgm.sgm_to_diffusers(load_file(path))
    for name in sgm.COMPONENTS:
        want = getattr(models, name).state_dict()
        got = {k if k in want else k.removeprefix("text_model."): v
               for k, v in back[name].items()}
        assert set(got) == set(want), name
        assert all(torch.equal(got[k], want[k]) for k in want), name


def test_file_has_sgm_layout_scaled(tiny_base: BuiltBase) -> None:
    head = read_header(tiny_base.model)
    header, meta = head.entries, head.metadata
    c, te1, te2 = TEST_CFG.unet_channels, TEST_CFG.te1_width, TEST_CFG.te2_width
    expect = {
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight":
            [c[1], c[1]],
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.1.attn2.to_k.weight":
            [c[2], te1 + te2],
        "model.diffusion_model.label_emb.0.0.weight": [4 * c[0], te2 + 6 * 256],
        "model.diffusion_model.output_blocks.2.2.conv.weight": [c[2], c[2], 3, 3],
        "conditioner.embedders.0.transformer.text_model.encoder.layers.1.self_attn.q_proj.weight":
            [te1, te1],
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight":
            [3 * te2, te2],
        "conditioner.embedders.1.model.text_projection": [te2, te2],
        "conditioner.embedders.1.model.positional_embedding": [77, te2],
        "first_stage_model.encoder.down.0.block.0.conv1.weight": [32, 32, 3, 3],
        "first_stage_model.decoder.mid.attn_1.q.weight": [32, 32, 1, 1],
    }
    for key, shape in expect.items():
        assert list(header[key].shape) == shape, key
    assert all(k.startswith(tuple(sgm.PREFIXES.values())) for k in header)
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"


def test_text_projection_stored_transposed(fresh) -> None:  # type: ignore[no-untyped-def]
    models, path = fresh
    with safe_open(str(path), framework="pt") as fh:
        stored = fh.get_tensor("conditioner.embedders.1.model.text_projection")
    assert torch.equal(stored, models.text_encoder_2.text_projection.weight.T)


def test_half_precision_save_loads(fresh, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    models, _ = fresh
    path = tmp_path / "fp16.safetensors"
    save_sdxl_single_file(models, path, dtype=torch.float16)
    assert {e.dtype for e in read_header(path).entries.values()} == {"F16"}
    comps = load_sdxl(path, tiny_base.config_dir, dtype=torch.float32)
    w = models.unet.conv_in.weight.detach()
    assert torch.equal(comps.unet.conv_in.weight, w.half().float())


def _digest(path) -> str:  # type: ignore[no-untyped-def]
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_rebuild_is_byte_identical(tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Same config -> same bytes (file and config dir), through the real CLI."""
    import dataclasses

    from kxl.cli import main
    from kxl.provenance import record_path, sha256_tree

    out, cdir = tmp_path / "base.safetensors", tmp_path / "config"
    cfg = json.dumps(dataclasses.asdict(TEST_CFG))
    with torch_state():
        rc = main(["synth-base", "--tags", str(tiny_base.tags), "--config-json", cfg,
                   "--out", str(out), "--config-dir", str(cdir)])
    assert rc == 0
    assert _digest(out) == _digest(tiny_base.model)
    assert sha256_tree(cdir) == sha256_tree(tiny_base.config_dir)
    assert record_path(out).is_file()
    assert not list(tmp_path.glob(".*tmp*")) and not list(tmp_path.glob(".*unverified*"))


def test_pretraining_lowers_vae_reconstruction_loss(tiny_base: BuiltBase) -> None:
    before, after = tiny_base.report["vae_recon_mse"]
    # the pictures it trains on (renders of random identities), held out by seed
    assert after["rendered"] < 0.8 * before["rendered"]


def test_vae_scaling_factor_gives_unit_variance_latents(tiny_base: BuiltBase) -> None:
    import numpy as np
    import torch

    from kxl.model.load import load_sdxl
    from kxl.model.pretrain import rendered_images

    vae = load_sdxl(tiny_base.model, tiny_base.config_dir).vae
    x = rendered_images(np.random.default_rng(12345), 32, TEST_CFG.image_size, TEST_CFG.image_size)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    assert 0.8 < float(z.std()) < 1.25  # other renders than the factor was measured on
