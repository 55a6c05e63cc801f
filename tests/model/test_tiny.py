"""The tiny text encoders' init: a token must stay visible at its own position of the context."""

from __future__ import annotations

import dataclasses

import torch

from kxl.model import tiny

from .conftest import TEST_CFG

IDS = {"vocab_size": 300, "bos": 298, "eos": 299, "pad2": 0}


def name_signal(std: float) -> list[tuple[float, float, float]]:
    """Per encoder: (change at the swapped position, change elsewhere, the context's std) of
    the penultimate hidden states (SDXL's context) when one token of the prompt is swapped."""
    models = tiny.build_models(dataclasses.replace(TEST_CFG, te_token_std=std), IDS)
    a = torch.tensor([[298, 5, 6, 7, 8, 9, 299] + [299] * 70])
    b = a.clone()
    b[0, 3] = 100
    out = []
    for te in (models.text_encoder, models.text_encoder_2):
        emb = te.get_input_embeddings().weight
        assert abs(float(emb.std()) - std) < 1e-4 * std
        with torch.no_grad():
            ha, hb = (te(x, output_hidden_states=True).hidden_states[-2][0] for x in (a, b))
        diff = (ha - hb).std(-1)
        assert float(diff[:3].abs().max()) == 0.0  # causal: nothing before the swap changes
        out.append((float(diff[3]), float(diff[4:].max()), float(ha.std())))
    return out


def test_scaled_token_embeddings_keep_a_swapped_token_apart() -> None:
    for at, later, scale in name_signal(TEST_CFG.te_token_std):
        assert at > scale, (at, scale)  # the swapped token dominates its own position
        assert later < 0.5 * at


def test_hf_default_init_smears_the_token_into_the_running_average() -> None:
    # Why the synthetic base rescales: with CLIP's own init (0.02) the random layers' outputs
    # swamp the token, which then moves its own position by less than half the context's std.
    for at, _, scale in name_signal(0.02):
        assert at < 0.5 * scale, (at, scale)
