"""Tokenizers built from the tag vocabulary: CLIP files, SDXL pad tokens, no lost bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.model.tokenizer import BOS, EOS, bytes_to_unicode

from .conftest import BuiltBase

CAPTIONS = [
    "1girl, solo, kirisame marisa (cosplay), touhou, ^_^, :d, >_<, masterpiece, best quality, "
    "newest, safe",
    "hatsune miku, vocaloid, o_o, x_x, (artist name:1.2), absurdres, nsfw, explicit, worst quality",
    "東方project, 🐱 cat ears, ;), <3, \\m/, :3, ( ͡° ͜ʖ ͡°)",
]


@pytest.fixture(scope="module")
def toks(tiny_base: BuiltBase):  # type: ignore[no-untyped-def]
    from transformers import CLIPTokenizer

    return (CLIPTokenizer.from_pretrained(tiny_base.config_dir / "tokenizer"),
            CLIPTokenizer.from_pretrained(tiny_base.config_dir / "tokenizer_2"))


def _bytes_of(tok, text: str) -> bytes:  # type: ignore[no-untyped-def]
    inv = {c: b for b, c in bytes_to_unicode().items()}
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.eos_token_id not in ids  # <|endoftext|> is also the unknown token
    pieces = "".join(tok.convert_ids_to_tokens(ids)).replace("</w>", "")
    return bytes(inv[c] for c in pieces)


@pytest.mark.parametrize("caption", CAPTIONS)
def test_real_captions_lose_nothing(toks, caption: str) -> None:  # type: ignore[no-untyped-def]
    for tok in toks:
        assert _bytes_of(tok, caption) == "".join(caption.lower().split()).encode()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"]), max_size=40))
def test_any_text_tokenises_without_unknowns(toks, text: str) -> None:  # type: ignore[no-untyped-def]
    import unicodedata

    norm = unicodedata.normalize("NFC", text)
    got = _bytes_of(toks[0], text)
    assert got == "".join(norm.lower().split()).encode()


def test_tag_words_are_single_tokens(toks) -> None:  # type: ignore[no-untyped-def]
    for word in ("masterpiece", "hatsune", "vocaloid", "quality"):
        assert len(toks[0](word, add_special_tokens=False).input_ids) == 1, word


def test_special_ids_and_padding_match_sdxl(toks, tiny_base: BuiltBase) -> None:  # type: ignore[no-untyped-def]
    tok1, tok2 = toks
    assert tok1.model_max_length == tok2.model_max_length == 77
    assert tok1.pad_token == EOS and tok2.pad_token == "!"  # as SDXL's tokenizer_2
    assert tok2.pad_token_id == 0
    ids = tok2("1girl", padding="max_length", max_length=77).input_ids
    assert ids[0] == tok2.bos_token_id and ids[-1] == 0 and len(ids) == 77
    for sub, tok in (("text_encoder", tok1), ("text_encoder_2", tok2)):
        cfg = json.loads((tiny_base.config_dir / sub / "config.json").read_text())
        assert cfg["bos_token_id"] == tok.convert_tokens_to_ids(BOS)
        assert cfg["eos_token_id"] == tok.eos_token_id
        assert cfg["pad_token_id"] == tok.pad_token_id
        assert cfg["vocab_size"] == len(tok)
    merges = (tiny_base.config_dir / "tokenizer" / "merges.txt").read_text().splitlines()
    assert merges[0] == "#version: 0.2"


def test_config_dir_layout(tiny_base: BuiltBase) -> None:
    files = sorted(p.relative_to(tiny_base.config_dir).as_posix()
                   for p in tiny_base.config_dir.rglob("*") if p.is_file())
    assert "model_index.json" in files and "scheduler/scheduler_config.json" in files
    assert all(f.endswith((".json", ".txt")) for f in files)
    sched = json.loads((tiny_base.config_dir / "scheduler/scheduler_config.json").read_text())
    assert sched["_class_name"] == "EulerDiscreteScheduler"
    assert (sched["beta_start"], sched["beta_end"], sched["num_train_timesteps"]) == (
        0.00085, 0.012, 1000)
    unet = json.loads((tiny_base.config_dir / "unet/config.json").read_text())
    assert unet["addition_embed_type"] == "text_time" and unet["addition_time_embed_dim"] == 256
    vae = json.loads((tiny_base.config_dir / "vae/config.json").read_text())
    assert len(vae["block_out_channels"]) == 4
    # the trained VAE's own latent scale (not SDXL's 0.13025), as the report gives it
    assert vae["scaling_factor"] == tiny_base.report["vae_scaling_factor"] > 0
