"""225-token chunking and stitching as sd-scripts v0.8.7 get_input_ids / get_hidden_states_sdxl."""

from __future__ import annotations

import torch

from kxl.train.text import chunk_ids, stitch, tokenize

BOS, EOS, PAD = 49406, 49407, 0


def _ids(n_text: int, pad: int) -> torch.Tensor:
    body = list(range(1000, 1000 + n_text))[:225]
    ids = [BOS] + body + [EOS] if n_text < 226 else [BOS] + body + [body[-1] + 1]
    ids = ids + [pad] * (227 - len(ids))
    return torch.tensor([ids[:227]])


def test_v1_chunks_are_bos_75_last() -> None:
    ids = _ids(100, EOS)  # CLIP-L: pad == eos
    ch = chunk_ids(ids, 77, EOS, EOS)
    assert ch.shape == (1, 3, 77)
    assert torch.equal(ch[0, :, 0], torch.full((3,), BOS))
    assert torch.equal(ch[0, 0, 1:76], ids[0, 1:76])
    assert torch.equal(ch[0, 1, 1:76], ids[0, 76:151])
    assert torch.equal(ch[0, 2, 1:76], ids[0, 151:226])
    assert torch.all(ch[0, :, 76] == ids[0, -1])


def test_v2_chunk_fixups() -> None:
    ids = _ids(100, PAD)  # bigG: pad '!' differs from eos
    ch = chunk_ids(ids, 77, EOS, PAD)
    # chunk 0 stops mid-text: its last token becomes EOS
    assert ch[0, 0, -2] not in (EOS, PAD) and ch[0, 0, -1] == EOS
    # chunk 1 holds the caption end: <text> EOS PAD ...; last stays PAD
    assert ch[0, 1, -1] == PAD
    # chunk 2 is empty: BOS PAD ... becomes BOS EOS PAD ...
    assert ch[0, 2, 1] == EOS and ch[0, 2, 2] == PAD


def test_stitch_keeps_bos_inner_and_last() -> None:
    h = torch.arange(2 * 3 * 77, dtype=torch.float32).reshape(6, 77, 1)
    out = stitch(h, 2, 77)
    assert out.shape == (2, 227, 1)
    per = h.reshape(2, 3, 77, 1)
    assert torch.equal(out[:, 0], per[:, 0, 0])
    assert torch.equal(out[:, 1:76], per[:, 0, 1:76])
    assert torch.equal(out[:, 76:151], per[:, 1, 1:76])
    assert torch.equal(out[:, -1], per[:, 2, 76])


def test_tokenize_with_tiny_tokenizers() -> None:
    from fixtures_train import build_tokenizers

    t1, t2 = build_tokenizers()
    ids1 = tokenize(["1girl, solo"] * 2, t1, 225)
    ids2 = tokenize(["1girl, solo"] * 2, t2, 225)
    assert ids1.shape == ids2.shape == (2, 3, 77)
    assert ids2[0, 1, 1] == t2.eos_token_id  # empty second chunk starts BOS EOS
    assert ids1[0, 1, 1] == t1.eos_token_id  # pad == eos for CLIP-L
