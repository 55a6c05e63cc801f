"""SDXL's diffusion math, shared by the base's pretraining, training and the eval probe.

Pure functions of tensors, in the formulas of diffusers' DDPMScheduler and sd-scripts v0.8.7
(epsilon target): the schedule, the noise draws and noising, the min-SNR weight, and the one
UNet call with SDXL's added conditions. It lives with the model (stage 8) so that every later
stage imports it from an earlier one. Callers keep their own dtypes (the base's schedule is
computed in float64, training's in float32): the base's and the LoKr's bytes depend on them.
"""

from __future__ import annotations

from typing import Any


def alphas_cumprod(beta_start: float, beta_end: float, steps: int, dtype: Any = None) -> Any:
    """DDPM `scaled_linear` betas (linear in sqrt(beta)), cumulative product of 1 - beta, in
    `dtype` (float32 as diffusers' DDPMScheduler when None)."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=dtype) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def snr(acp: Any) -> Any:
    """Signal-to-noise ratio per timestep: (sqrt(acp) / sqrt(1 - acp))^2."""
    return (acp.sqrt() / (1.0 - acp).sqrt()) ** 2


def min_snr_weight(snr_t: Any, gamma: float) -> Any:
    """min-SNR-gamma loss weight for the epsilon target: min(SNR, gamma) / SNR."""
    import torch

    return torch.minimum(snr_t, torch.full_like(snr_t, gamma)) / snr_t


def add_noise(x0: Any, noise: Any, acp: Any, t: Any) -> Any:
    """q(x_t | x_0): sqrt(acp_t) x0 + sqrt(1 - acp_t) noise for [B] timesteps `t` indexing
    `acp` (on `acp`'s device). Bit-equal to DDPMScheduler.add_noise on float32 latents; on
    16-bit ones it takes 1 - acp_t before the cast, diffusers after."""
    a = acp[t].to(x0.dtype).sqrt().view(-1, 1, 1, 1)
    s = (1.0 - acp[t]).to(x0.dtype).sqrt().view(-1, 1, 1, 1)
    return a * x0 + s * noise


def draw_noise_per_sample(
    latents_shape: tuple[int, ...], offset: float, steps: int, gens: list[Any]
) -> tuple[Any, Any]:
    """draw_noise for each sample from its own generator (rng_streams per_sample), stacked."""
    import torch

    rows = [draw_noise((1, *latents_shape[1:]), offset, steps, g) for g in gens]
    return torch.cat([n for n, _ in rows]), torch.cat([t for _, t in rows])


def draw_noise(
    latents_shape: tuple[int, ...], offset: float, steps: int, gen: Any
) -> tuple[Any, Any]:
    """Noise with offset and timesteps, drawn in sd-scripts' order from one generator.

    noise = randn(latents) + offset * randn(B, C, 1, 1); t = randint(0, steps, (B,)).
    """
    import torch

    b, c = latents_shape[:2]
    dev = gen.device
    noise = torch.randn(latents_shape, generator=gen, device=dev)
    if offset:
        noise = noise + offset * torch.randn((b, c, 1, 1), generator=gen, device=dev)
    t = torch.randint(0, steps, (b,), generator=gen, device=dev)
    return noise, t


def full_image_time_ids(height: int, width: int, dtype: Any = None, device: Any = None) -> Any:
    """[1, 6] SDXL size conditioning of an uncropped picture: original size (h, w), crop
    top-left (0, 0), target size (h, w), as diffusers' pipeline builds it."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype, device=device)


def predict(unet: Any, noisy: Any, t: Any, context: Any, pooled: Any, time_ids: Any) -> Any:
    """The SDXL UNet's epsilon prediction for `noisy` latents at timesteps `t`: cross-attention
    on `context` [B, L, D] and the added conditions, the pooled bigG embedding [B, P] and the
    size ids [B, 6]."""
    cond = {"text_embeds": pooled, "time_ids": time_ids}
    return unet(noisy, t, encoder_hidden_states=context, added_cond_kwargs=cond).sample
