"""225-token prompts as 3 chunks of 75 with sd-scripts v0.8.7's stitching (SDXL).

Tokenize to max_token_length + 2 (one BOS, one final token), cut into chunks
[BOS] + 75 tokens + [last token], then for a tokenizer whose pad differs from eos (bigG) end a
chunk that stops mid-text with EOS and turn a chunk that starts with PAD into BOS EOS PAD...
After encoding, keep BOS of chunk 0, the 75 inner states of every chunk, and the last state of
the last chunk; concatenate the penultimate hidden states of both encoders on the feature axis;
the pooled (projected) bigG output comes from the first chunk.
"""

from __future__ import annotations

from typing import Any


def chunk_ids(ids: Any, model_max: int, eos: int, pad: int) -> Any:
    """[B, max_len + 2] token ids -> [B, n_chunks, model_max] (vectorised over the batch)."""
    import torch

    inner = model_max - 2
    body = ids[:, 1:-1]
    n = body.shape[1] // inner
    chunks = body.reshape(ids.shape[0], n, inner)
    bos = ids[:, :1, None].expand(-1, n, 1)
    last = ids[:, -1:, None].expand(-1, n, 1)
    out = torch.cat([bos, chunks, last], dim=2).clone()
    if pad != eos:
        before_last = out[:, :, -2]
        mid_text = (before_last != eos) & (before_last != pad)
        out[:, :, -1] = torch.where(mid_text, torch.full_like(before_last, eos), out[:, :, -1])
        starts_pad = out[:, :, 1] == pad
        out[:, :, 1] = torch.where(starts_pad, torch.full_like(before_last, eos), out[:, :, 1])
    return out


def tokenize(captions: list[str], tokenizer: Any, max_token_length: int) -> Any:
    """Captions -> [B, n_chunks, 77] ids as sd-scripts builds them."""
    ids = tokenizer(
        captions,
        padding="max_length",
        truncation=True,
        max_length=max_token_length + 2,
        return_tensors="pt",
    ).input_ids
    return chunk_ids(
        ids, tokenizer.model_max_length, tokenizer.eos_token_id, tokenizer.pad_token_id
    )


def stitch(hidden: Any, batch: int, model_max: int) -> Any:
    """[B * n, 77, D] per-chunk states -> [B, n * 75 + 2, D]."""
    import torch

    h = hidden.reshape(batch, -1, model_max, hidden.shape[-1])
    inner = h[:, :, 1:-1].reshape(batch, -1, hidden.shape[-1])
    return torch.cat([h[:, 0, :1], inner, h[:, -1, -1:]], dim=1)


def encode(ids1: Any, ids2: Any, te1: Any, te2: Any) -> tuple[Any, Any]:
    """Token chunks of both encoders -> (context [B, L, D1 + D2], pooled bigG [B, P])."""
    import torch

    b, n, m = ids1.shape
    out1 = te1(ids1.reshape(-1, m), output_hidden_states=True, return_dict=True)
    out2 = te2(ids2.reshape(-1, m), output_hidden_states=True, return_dict=True)
    h1 = stitch(out1.hidden_states[-2], b, m)
    h2 = stitch(out2.hidden_states[-2], b, m)
    pooled = out2.text_embeds.reshape(b, n, -1)[:, 0]
    return torch.cat([h1, h2], dim=2), pooled
