"""The shared diffusion math against diffusers' DDPMScheduler and sd-scripts v0.8.7 formulas."""

from __future__ import annotations

import math

import pytest
import torch

from kxl.model import pretrain, tiny
from kxl.model.diffusion import (
    add_noise,
    alphas_cumprod,
    draw_noise,
    full_image_time_ids,
    min_snr_weight,
    predict,
    snr,
)

from .conftest import TEST_CFG


@pytest.fixture(scope="module")
def ddpm():  # type: ignore[no-untyped-def]
    """SDXL's training scheduler as sd-scripts builds it (diffusers' own numbers)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, clip_sample=False)


def test_scaled_linear_schedule_equals_ddpm_scheduler(ddpm) -> None:  # type: ignore[no-untyped-def]
    acp = alphas_cumprod(0.00085, 0.012, 1000)
    assert acp.dtype == torch.float32 and torch.equal(acp, ddpm.alphas_cumprod)
    # the definition in plain float64 Python: betas linear in sqrt(beta) from 0.00085 to 0.012
    lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
    betas = [(lo + (hi - lo) * k / 999) ** 2 for k in range(1000)]
    for t in (0, 1, 250, 999):
        assert float(acp[t]) == pytest.approx(math.prod(1 - b for b in betas[: t + 1]), rel=2e-6)


def test_add_noise_equals_ddpm_scheduler_on_float32(ddpm) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 4, 8, 8, generator=g), torch.randn(5, 4, 8, 8, generator=g)
    t = torch.tensor([0, 1, 500, 998, 999])
    acp = alphas_cumprod(0.00085, 0.012, 1000)
    assert torch.equal(add_noise(x0, noise, acp, t), ddpm.add_noise(x0, noise, t))


def test_the_bases_float64_schedule_rounds_to_within_an_ulp(ddpm) -> None:  # type: ignore[no-untyped-def]
    # the base was always made from the float64 schedule; it must stay the same curve
    base = pretrain.alphas_cumprod()
    assert base.dtype == torch.float32
    torch.testing.assert_close(base, ddpm.alphas_cumprod, rtol=2e-6, atol=0.0)


def test_min_snr_weight_is_min_snr_gamma_over_snr() -> None:
    acp = alphas_cumprod(0.00085, 0.012, 1000)
    s = snr(acp)
    # sd-scripts: all_snr = (sqrt(acp) / sqrt(1 - acp))^2; weight = min(snr, gamma) / snr.
    for t in (0, 100, 400, 999):
        a = float(acp[t])
        expect_snr = a / (1 - a)
        assert math.isclose(float(s[t]), expect_snr, rel_tol=1e-5)
        w = float(min_snr_weight(s[t : t + 1], 5.0)[0])
        assert math.isclose(w, min(expect_snr, 5.0) / expect_snr, rel_tol=1e-5)
    w = min_snr_weight(s, 5.0)
    assert torch.all(w[s <= 5.0] == 1.0) and torch.all(w[s > 5.0] < 1.0)


def test_noise_offset_is_per_channel_randn_scaled() -> None:
    """noise + offset * randn(B, C, 1, 1), then randint timesteps, from the same generator."""
    g1 = torch.Generator().manual_seed(7)
    noise, t = draw_noise((2, 4, 8, 8), 0.0357, 1000, g1)
    g2 = torch.Generator().manual_seed(7)
    base = torch.randn((2, 4, 8, 8), generator=g2)
    off = torch.randn((2, 4, 1, 1), generator=g2)
    t2 = torch.randint(0, 1000, (2,), generator=g2)
    assert torch.equal(noise, base + 0.0357 * off)
    assert torch.equal(t, t2)
    # zero offset draws no extra numbers
    g3, g4 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    n0, _ = draw_noise((2, 4, 8, 8), 0.0, 1000, g3)
    assert torch.equal(n0, torch.randn((2, 4, 8, 8), generator=g4))


def _unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**tiny.unet_config(TEST_CFG)).eval()


def test_full_image_time_ids_are_original_crop_target() -> None:
    # diffusers' SDXL pipeline: original_size (h, w) + crops_coords_top_left (0, 0) + target_size
    ids = full_image_time_ids(96, 64)
    assert ids.dtype == torch.float32
    assert ids.tolist() == [[96.0, 64.0, 0.0, 0.0, 96.0, 64.0]]
    assert full_image_time_ids(8, 8, torch.float16).dtype == torch.float16


def test_predict_is_the_unet_call_with_sdxl_added_conditions() -> None:
    unet = _unet()
    g = torch.Generator().manual_seed(1)
    width = TEST_CFG.te1_width + TEST_CFG.te2_width
    noisy = torch.randn(2, 4, 4, 4, generator=g)
    ctx = torch.randn(2, 77, width, generator=g)
    pooled = torch.randn(2, TEST_CFG.te2_width, generator=g)
    ids = torch.tensor([[32.0, 32, 0, 0, 32, 32], [32.0, 48, 8, 0, 32, 32]])
    t = torch.tensor([10, 900])
    with torch.no_grad():
        got = predict(unet, noisy, t, ctx, pooled, ids)
        want = unet(noisy, t, encoder_hidden_states=ctx,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        # the added conditions reach the output: other size ids, other prediction
        other = predict(unet, noisy, t, ctx, pooled, ids.flip(0))
    assert torch.equal(got, want)
    assert not torch.equal(got, other)


def test_size_conditioning_matches_sd_scripts_embedding() -> None:
    """The UNet's add_time_proj on time_ids equals sd-scripts get_size_embeddings (cos, sin)."""
    unet = _unet()
    ids = torch.tensor([[1024.0, 768.0, 0.0, 32.0, 1024.0, 768.0]])
    half = tiny.TIME_EMBED_DIM // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = ids.flatten()[:, None] * freqs[None]
    expect = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).reshape(1, -1)
    got = unet.add_time_proj(ids.flatten()).reshape(1, -1)
    assert got.shape == (1, 6 * tiny.TIME_EMBED_DIM)
    assert torch.allclose(got, expect, atol=1e-5)
