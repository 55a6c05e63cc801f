"""SDXL base 1.0 at its real shapes (issue 18 sections 1-2): `kxl random-base` writes the
single file (fp16, ~6.9 GB) through the tiny base's writer, the checked loader reads it, and the
Kohaku-preset LoKr over it is a < 800 MB fp16 file that LyCORIS' own kohya loader rebuilds.

Expected numbers are SDXL's published ones (parameter counts of stabilityai/stable-diffusion-
xl-base-1.0; CLIP's 49,408-token vocabulary with <|startoftext|> 49406 and <|endoftext|> 49407;
SDXL's tokenizer_2 pads with "!", id 0) and the model card's "< 800 MB"; not kxl's output.
Needs ~15 GB of RAM and ~7 GB of disk; about 5 minutes on 2 cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KXL = Path(sys.executable).with_name("kxl")
SDXL_PARAMS = {"unet": 2_567_463_684, "text_encoder": 123_060_480,
               "text_encoder_2": 694_659_840, "vae": 83_653_863}


@pytest.fixture(scope="module")
def real_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdxl")
    proc = subprocess.run(
        [str(KXL), "random-base", "--out", str(out / "base.safetensors"),
         "--config-dir", str(out / "config")],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    yield out / "base.safetensors", out / "config", report
    (out / "base.safetensors").unlink()


def test_single_file_has_sdxl_shapes_in_fp16(real_base) -> None:
    from kxl.model.load import check_single_file
    from kxl.model.st_io import read_header

    path, config, report = real_base
    assert report["params"] == SDXL_PARAMS
    header, meta = read_header(path)
    assert {e["dtype"] for e in header.values()} == {"F16"}
    values = sum(torch.Size(e["shape"]).numel() for e in header.values())
    assert values == sum(SDXL_PARAMS.values())  # every parameter, nothing else
    assert 2 * values < path.stat().st_size < 2 * values + 2_000_000  # fp16 data + header
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    assert "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight" in header
    assert "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight" in header
    check_single_file(path, config)


def test_tokenizers_have_clip_vocabulary_and_special_ids(real_base) -> None:
    from transformers import CLIPTokenizer

    _, config, _ = real_base
    tok1 = CLIPTokenizer.from_pretrained(config / "tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(config / "tokenizer_2")
    assert len(tok1) == len(tok2) == 49_408
    assert (tok1.bos_token_id, tok1.eos_token_id, tok1.pad_token_id) == (49406, 49407, 49407)
    assert tok2.pad_token_id == 0
    ids = tok1("1girl, hatsune miku", padding="max_length", max_length=77).input_ids
    assert ids[0] == 49406 and max(ids) == 49407 and len(ids) == 77


def test_kohaku_lokr_at_real_shapes_is_under_800mb_and_loads_in_lycoris(real_base,
                                                                        tmp_path) -> None:
    from lycoris.kohya import create_network_from_weights

    from kxl.lokr.keys import kohya_views
    from kxl.lokr.network import LokrSpec, build_network
    from kxl.model.load import load_sdxl
    from kxl.model.st_io import save_streaming
    from kxl.train.components import Adapter

    path, config, _ = real_base
    m = load_sdxl(path, config, dtype=torch.float16)
    tes = [m.text_encoder, m.text_encoder_2]
    torch.manual_seed(0)
    net = build_network(LokrSpec(preset=str(ROOT / "config/lycoris/kohaku_xl.toml")), tes,
                        m.unet)
    adapter = Adapter(net, m.unet, tes)
    # a few modules perturbed (as after training) to compare their deltas after the reload
    probe = ["lora_unet_input_blocks_8_1_transformer_blocks_9_attn2_to_k",
             "lora_unet_middle_block_0_in_layers_2",
             "lora_te2_text_model_encoder_layers_31_mlp_fc1"]
    own = {adapter.to_kohya[mod.lora_name]: mod for mod in net.unet_loras + net.text_encoder_loras}
    with torch.no_grad():
        for name in probe:
            for p in own[name].parameters():
                p.add_(torch.randn_like(p) * 0.01)
    sd = adapter.state_dict()
    lokr = tmp_path / "lokr.safetensors"
    save_streaming(sd, lokr, {"ss_network_module": "lycoris.kohya"}, torch.float16)
    del sd
    assert lokr.stat().st_size < 800e6  # the card: "< 800 MB"
    assert len(own) == 1058 + 256  # 1058 LoKr + 256 trained norms (docs/lokr-real-shapes.md)

    unet_v, te_v = kohya_views(m.unet, tes)
    loaded, _ = create_network_from_weights(1.0, str(lokr), None, te_v, unet_v)
    theirs = {mod.lora_name: mod for mod in loaded.unet_loras + loaded.text_encoder_loras}
    assert set(theirs) == set(own)
    for name, mod in own.items():
        want = {k: tuple(v.shape) for k, v in mod.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in theirs[name].state_dict().items()} == want, name
    for name in probe:
        ours = own[name].get_diff_weight(multiplier=1)[0].half().float()
        got = theirs[name].get_diff_weight(multiplier=1)[0].float()
        assert torch.allclose(got, ours, rtol=1e-2, atol=1e-5), name
