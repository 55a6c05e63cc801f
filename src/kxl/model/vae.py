"""The VAE steps shared by the bucket cache (`buckets.cache: latents`) and training.

Both paths must scale pixels and draw the posterior sample identically, or a latents cache
would train a different model than the pixel cache; these functions are that single definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Posterior:
    """The VAE's diagonal Gaussian per image: mean and std [n, 4, h/8, w/8], float32, before
    the latent scaling factor (training multiplies the sample by it)."""

    mean: Any
    std: Any


def vae_input(px: Any) -> Any:
    """uint8 pixels [n, h, w, 3] (torch) -> float [n, 3, h, w] in [-1, 1]."""
    return px.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def encode_posterior(vae: Any, px: Any) -> Posterior:
    """The VAE posterior of uint8 pixels [n, h, w, 3] (on the VAE's device)."""
    import torch

    with torch.no_grad():
        dist = vae.encode(vae_input(px)).latent_dist
    return Posterior(dist.mean, dist.std)


def sample_posterior(post: Posterior, generator: Any) -> Any:
    """mean + std * eps with eps drawn as diffusers' DiagonalGaussianDistribution.sample draws it
    (randn_tensor over mean's shape, device and dtype): the generator advances by exactly the
    same amount as on the pixel path, so the noise and timesteps drawn after it are unchanged."""
    from diffusers.utils.torch_utils import randn_tensor

    mean = post.mean
    eps = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + post.std * eps
