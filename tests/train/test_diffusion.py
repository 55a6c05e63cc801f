"""Diffusion math against diffusers' DDPMScheduler and sd-scripts v0.8.7 formulas."""

from __future__ import annotations

import math

import torch

from kxl.train.diffusion import add_noise, alphas_cumprod, draw_noise, min_snr_weight, snr


def test_scaled_linear_schedule_matches_ddpm_scheduler() -> None:
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
    )
    acp = alphas_cumprod(0.00085, 0.012, 1000)
    assert torch.equal(acp, ref.alphas_cumprod)
    x0, noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 500, 999])
    assert torch.allclose(add_noise(x0, noise, acp, t), ref.add_noise(x0, noise, t), atol=1e-6)


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


def test_size_conditioning_matches_sd_scripts_embedding() -> None:
    """The UNet's add_time_proj on time_ids equals sd-scripts get_size_embeddings (cos, sin)."""
    from kxl.train.testing import build_models

    unet = build_models("tiny").unet
    ids = torch.tensor([[1024.0, 768.0, 0.0, 32.0, 1024.0, 768.0]])
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = ids.flatten()[:, None] * freqs[None]
    expect = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).reshape(1, -1)
    got = unet.add_time_proj(ids.flatten()).reshape(1, -1)
    assert got.shape == (1, 6 * 256)
    assert torch.allclose(got, expect, atol=1e-5)
