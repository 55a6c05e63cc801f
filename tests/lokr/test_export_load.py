"""The kohya-keyed adapter loads in LyCORIS (both entry points) and reproduces the deltas."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kxl.errors import KxlError
from kxl.lokr.keys import kohya_views
from kxl.lokr.network import LokrSpec, build_network, preset_applied, read_preset
from kxl.train.components import Adapter

ROOT = Path(__file__).resolve().parents[2]
PRESET = str(ROOT / "config/lycoris/kohaku_xl.toml")
KEY = re.compile(
    r"^lora_(unet|te1_text_model|te2_text_model)_[a-z0-9_]+\.(lokr_w1|lokr_w2|alpha|w_norm|b_norm)$"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A network with every parameter perturbed (as after training), saved in kohya keys."""
    from fixtures_train import build_models

    m = build_models("tiny", seed=1)
    tes = [m.text_encoder, m.text_encoder_2]
    torch.manual_seed(0)
    net = build_network(LokrSpec(preset=PRESET), tes, m.unet)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    adapter = Adapter(net, m.unet, tes)
    path = tmp_path_factory.mktemp("lokr") / "lokr.safetensors"
    save_file(adapter.state_dict(), str(path))
    return m, net, adapter, path


def _trained_deltas(net, adapter) -> dict[str, torch.Tensor]:
    mods = net.unet_loras + net.text_encoder_loras
    return {adapter.to_kohya[k]: v for k, v in _deltas(mods).items()}


def _deltas(modules) -> dict[str, torch.Tensor]:
    return {m.lora_name: m.get_diff_weight(multiplier=1)[0].detach() for m in modules}


def test_keys_are_kohya(trained) -> None:
    m, net, adapter, path = trained
    sd = load_file(str(path))
    bad = [k for k in sd if not KEY.match(k)]
    assert not bad, bad[:3]
    attn = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q."
    assert any(k.startswith(attn) for k in sd)
    assert "lora_unet_out_0.w_norm" in sd and "lora_unet_label_emb_0_0.lokr_w1" in sd
    alphas = {float(v) for k, v in sd.items() if k.endswith(".alpha")}
    assert alphas == {10000.0}  # dim = alpha = 10000: full matrices, scale 1


def test_factors_follow_preset(trained) -> None:
    """factor 4 attention, 2 feed-forward, 8 elsewhere incl. text encoders (LyCORIS factorisation:
    w1 is (factorization(out, f)[0], factorization(in, f)[0]))."""
    from lycoris.functional import factorization

    sd = load_file(str(trained[3]))
    cases = {
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q": 4,
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k": 4,
        "lora_unet_input_blocks_4_1_transformer_blocks_0_ff_net_2": 2,
        "lora_unet_input_blocks_4_1_transformer_blocks_0_ff_net_0_proj": 2,
        "lora_unet_input_blocks_4_1_proj_in": 8,
        "lora_unet_input_blocks_1_0_in_layers_2": 8,
        "lora_te1_text_model_encoder_layers_0_mlp_fc1": 8,
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj": 8,
    }
    for name, f in cases.items():
        w1, w2 = sd[f"{name}.lokr_w1"], sd[f"{name}.lokr_w2"]
        out_dim, in_dim = w1.shape[0] * w2.shape[0], w1.shape[1] * w2.shape[1]
        want = (factorization(out_dim, f)[0], factorization(in_dim, f)[0])
        assert tuple(w1.shape) == want, (name, tuple(w1.shape), want)


def test_text_encoders_fully_covered(trained) -> None:
    sd = load_file(str(trained[3]))
    for i in (1, 2):
        mods = {k.split(".")[0] for k in sd if k.startswith(f"lora_te{i}_")}
        assert len(mods) == 6 * 3


def test_kohya_create_network_from_weights_reproduces_deltas(trained) -> None:
    from lycoris.kohya import create_network_from_weights

    m, net, adapter, path = trained
    unet_v, te_v = kohya_views(m.unet, [m.text_encoder, m.text_encoder_2])
    loaded, _ = create_network_from_weights(1.0, str(path), None, te_v, unet_v)
    want = _trained_deltas(net, adapter)
    got = _deltas(loaded.unet_loras + loaded.text_encoder_loras)
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.allclose(got[k], v, rtol=0, atol=1e-6), k


def test_create_lycoris_from_weights_reproduces_deltas(trained, monkeypatch) -> None:
    """The generic loader matches `<LORA_PREFIX>_<module name>`: one prefix per component."""
    from lycoris import create_lycoris_from_weights
    from lycoris.wrapper import LycorisNetwork

    m, net, adapter, path = trained
    unet_v, te_v = kohya_views(m.unet, [m.text_encoder, m.text_encoder_2])
    sd = load_file(str(path))
    want = _trained_deltas(net, adapter)
    got: dict[str, torch.Tensor] = {}
    for prefix, module in (("lora_unet", unet_v), ("lora_te1", te_v[0]), ("lora_te2", te_v[1])):
        monkeypatch.setattr(LycorisNetwork, "LORA_PREFIX", prefix)
        part = {k: v for k, v in sd.items() if k.startswith(prefix + "_")}
        loaded, _ = create_lycoris_from_weights(1.0, "", module, weights_sd=part)
        got |= _deltas(loaded.loras)
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.allclose(got[k], v, rtol=0, atol=1e-6), k


def test_preset_state_is_restored() -> None:
    from lycoris.kohya import LycorisNetworkKohya

    before = list(LycorisNetworkKohya.UNET_TARGET_REPLACE_MODULE)
    with preset_applied(read_preset(PRESET)):
        assert LycorisNetworkKohya.UNET_TARGET_REPLACE_MODULE == [
            "Transformer2DModel",
            "ResnetBlock2D",
            "Downsample2D",
            "Upsample2D",
        ]
    assert before == LycorisNetworkKohya.UNET_TARGET_REPLACE_MODULE


def test_preset_missing_clip_class_is_refused(tmp_path, tiny_models) -> None:
    """A preset naming only a CLIP class transformers does not use must not pass silently."""
    text = Path(PRESET).read_text().replace('"CLIPAttention", ', "")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    tes = [tiny_models.text_encoder, tiny_models.text_encoder_2]
    with pytest.raises(KxlError, match="text encoder 1"):
        build_network(LokrSpec(preset=str(bad)), tes, tiny_models.unet)


def test_bad_preset_named(tmp_path) -> None:
    p = tmp_path / "p.toml"
    p.write_text("unknown_key = 1\n")
    with pytest.raises(KxlError, match="p.toml"):
        read_preset(p)
