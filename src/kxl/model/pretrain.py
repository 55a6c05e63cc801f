"""A short, seeded CPU pretraining that makes the tiny SDXL meaningful.

- The VAE learns to reconstruct pictures in the synthetic images' style: `kxl.images.render`
  drawings of *random* identities (random shape, colours, stripes, background, frame), never the
  dataset's characters. The fine-tune leaves the VAE frozen, like SDXL's, whose VAE already
  reconstructs anime pictures well; a VAE pretrained on generic gradients alone came out
  colourless on these pictures (saturated shapes turned grey), and nothing downstream could
  then draw a character's colours. It gets the most steps: its reconstructions bound what any
  generated picture can score (CCIP on VAE round trips of the eval references: 0.37 after 1000
  steps, 0.57 after 2500 with a decaying lr).
- The UNet then learns epsilon prediction on the latents of procedurally generated pictures
  (colour gradients with a circle, square, ring or stripes), conditioned on generic captions
  ("red circle, blue background"). The synthetic danbooru images and their tags are
  deliberately NOT used, so the fine-tune later has something to learn: which tag names which
  drawing. The pictures are encoded once into a pool (latents and both encoders' outputs), so a
  step runs the UNet alone; 10% of samples see the empty caption, so classifier-free guidance
  has an unconditional model to push away from.
All randomness comes from one explicit generator per phase.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kxl.model.diffusion import add_noise, full_image_time_ids, predict
from kxl.model.diffusion import alphas_cumprod as schedule
from kxl.model.tiny import SCHEDULER_CONFIG

COLOURS = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.1, 0.2, 0.9),
    "yellow": (0.95, 0.9, 0.1), "purple": (0.6, 0.1, 0.8), "orange": (1.0, 0.55, 0.0),
    "white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0),
}
SHAPES = ("circle", "square", "ring", "stripes")


def caption_words() -> list[str]:
    """Every caption the pretraining can produce (to seed the tokenizer vocabulary)."""
    return [f"{c} {s}, {b} background" for c in COLOURS for s in SHAPES for b in COLOURS]


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # [n, 3, size, size] in [-1, 1]
    captions: list[str]


def procedural_images(gen: torch.Generator, n: int, size: int) -> Batch:
    """`n` pictures: a two-colour linear gradient background and one coloured shape."""
    palette = torch.tensor(list(COLOURS.values()))
    names = list(COLOURS)
    fg, bg1, bg2 = (torch.randint(len(names), (n,), generator=gen) for _ in range(3))
    shape = torch.randint(len(SHAPES), (n,), generator=gen)
    angle = torch.rand(n, generator=gen) * 2 * math.pi
    centre = torch.rand(n, 2, generator=gen) * 0.5 + 0.25
    radius = torch.rand(n, generator=gen) * 0.15 + 0.12
    axis = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # [size, size]
    proj = (xx[None] - 0.5) * torch.cos(angle)[:, None, None] + (
        yy[None] - 0.5) * torch.sin(angle)[:, None, None]
    t = (proj / math.sqrt(0.5) + 0.5).clamp(0, 1)[:, None]  # [n, 1, s, s]
    img = palette[bg1][:, :, None, None] * (1 - t) + palette[bg2][:, :, None, None] * t
    dx, dy = xx[None] - centre[:, 0, None, None], yy[None] - centre[:, 1, None, None]
    r = radius[:, None, None]
    dist = torch.sqrt(dx**2 + dy**2)
    masks = torch.stack([
        dist < r,
        (dx.abs() < r) & (dy.abs() < r),
        (dist < r) & (dist > 0.6 * r),
        torch.sin(yy[None] * 2 * math.pi / (r * 0.9)) > 0,
    ], dim=1)  # [n, shapes, s, s]
    mask = masks[torch.arange(n), shape][:, None].float()
    img = img * (1 - mask) + palette[fg][:, :, None, None] * mask
    # A handful of captions per batch: a loop over the batch, not over a dataset.
    caps = [f"{names[f]} {SHAPES[s]}, {names[b]} background"
            for f, s, b in zip(fg.tolist(), shape.tolist(), bg1.tolist(), strict=True)]
    return Batch(img * 2 - 1, caps)


def rendered_images(rng: np.random.Generator, n: int, size: int, crop: int) -> torch.Tensor:
    """`n` random `crop`-pixel crops of `size`-pixel renders of random identities, in [-1, 1].

    90% draw a shape (10% the no-character checkerboard), 80% have a series gradient; every
    identity is a fresh random 64-bit hash, so none is a dataset character's."""
    from kxl.images import render

    words = rng.integers(0, np.iinfo(np.int64).max, size=(2, n), dtype=np.int64).astype(np.uint64)
    ident = render.identities(words[0], rng.random(n) < 0.9)
    series = render.series_colours(words[1], rng.random(n) < 0.8)
    ratings = rng.integers(0, len(render.RATING_FRAME), n)
    corners = rng.integers(0, size - crop + 1, size=(n, 2))
    out = np.empty((n, 3, crop, crop), np.uint8)
    for i in range(n):  # one batch of a few pictures per step, not a dataset
        img = render.render(size, size, ident, i, series[i], int(ratings[i]), rng)
        y, x = corners[i]
        out[i] = img[:, y : y + crop, x : x + crop]
    return torch.from_numpy(out).float() / 127.5 - 1.0


def cosine_decay(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Half-cosine from the base lr to 0 over `steps`: a short run at constant lr ends on
    Adam's noise floor, a decayed one settles well below it."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, steps) / max(steps, 1))))


def _steps(n: int, desc: str) -> Iterable[int]:
    """`range(n)` with a progress bar on stderr (the rule's log): a phase runs for minutes."""
    from tqdm import tqdm

    return tqdm(range(n), desc=desc, unit="step", mininterval=10.0, file=sys.stderr)


def train_vae(
    vae: torch.nn.Module, rng: np.random.Generator, gen: torch.Generator, steps: int, batch: int,
    size: int, crop: int, lr: float, kl_weight: float = 1e-6,
) -> list[float]:
    """Reconstruction (MSE) + small KL, like the LDM autoencoder without its GAN, on rendered
    pictures (`rng` draws them, `gen` the posterior samples); returns the per-step
    reconstruction losses."""
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = cosine_decay(opt, steps)
    vae.train()
    losses = []
    for _ in _steps(steps, "vae"):
        x = rendered_images(rng, batch, size, crop)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        mse = F.mse_loss(rec, x)
        loss = mse + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(mse.item())
    vae.eval()
    return losses


@torch.no_grad()
def vae_recon_loss(vae: torch.nn.Module, seed: int, n: int, size: int) -> dict[str, float]:
    """Deterministic held-out reconstruction MSE (posterior mean) on both picture kinds."""
    held_out = {
        "rendered": rendered_images(np.random.default_rng([seed, 99]), n, size, size),
        "procedural": procedural_images(torch.Generator().manual_seed(seed), n, size).images,
    }
    return {k: float(F.mse_loss(vae.decode(vae.encode(x).latent_dist.mean).sample, x))
            for k, x in held_out.items()}


@torch.no_grad()
def latent_scaling_factor(vae: torch.nn.Module, seed: int, n: int, size: int) -> float:
    """1 / std of the posterior means of `n` held-out renders, to 5 significant digits."""
    x = rendered_images(np.random.default_rng([seed, 98]), n, size, size)
    std = float(vae.encode(x).latent_dist.mean.std())
    return float(f"{1.0 / std:.5g}")


Encoder = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]


def sdxl_text_encoder(tok1, tok2, te1, te2) -> Encoder:  # type: ignore[no-untyped-def]
    """SDXL conditioning as sd-scripts builds it: penultimate hidden states of both encoders
    concatenated, plus the projected pooled output of encoder 2."""

    @torch.no_grad()
    def encode(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids1 = tok1(captions, padding="max_length", truncation=True, max_length=77,
                    return_tensors="pt").input_ids
        ids2 = tok2(captions, padding="max_length", truncation=True, max_length=77,
                    return_tensors="pt").input_ids
        o1 = te1(ids1, output_hidden_states=True)
        o2 = te2(ids2, output_hidden_states=True)
        ctx = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], dim=-1)
        return ctx, o2.text_embeds

    return encode


@dataclass(frozen=True)
class UnetPool:
    """Pretraining pictures encoded once: latents and both encoders' conditioning."""

    latents: torch.Tensor  # [n, 4, s/8, s/8], already scaled
    context: torch.Tensor  # [n, 77, te1 + te2]
    pooled: torch.Tensor  # [n, te2]
    null_context: torch.Tensor  # [1, 77, te1 + te2], the empty caption (CFG's unconditional)
    null_pooled: torch.Tensor  # [1, te2]


@torch.no_grad()
def encode_pool(vae: torch.nn.Module, encode: Encoder, gen: torch.Generator, n: int, size: int,
                chunk: int = 64) -> UnetPool:
    """`n` procedural pictures with their captions, encoded in chunks."""
    lats, ctxs, pools = [], [], []
    for start in range(0, n, chunk):
        b = procedural_images(gen, min(chunk, n - start), size)
        lats.append(vae.encode(b.images).latent_dist.sample(generator=gen)
                    * vae.config.scaling_factor)
        ctx, pooled = encode(b.captions)
        ctxs.append(ctx)
        pools.append(pooled)
    null_ctx, null_pooled = encode([""])
    return UnetPool(torch.cat(lats), torch.cat(ctxs), torch.cat(pools), null_ctx, null_pooled)


def alphas_cumprod() -> torch.Tensor:
    """The base's own DDPM schedule (its scheduler config: SDXL's scaled-linear betas
    0.00085..0.012 over 1000 steps), computed in float64 and stored as float32, as the base was
    always made (training computes it in float32: the two differ in the last bits)."""
    c = SCHEDULER_CONFIG
    return schedule(c["beta_start"], c["beta_end"], c["num_train_timesteps"],
                    dtype=torch.float64).float()


@torch.no_grad()
def caption_advantage(
    unet: torch.nn.Module, vae: torch.nn.Module, encode: Encoder, seed: int, n: int, size: int,
    timesteps: tuple[int, ...] = (300, 600, 900),
) -> dict[str, float]:
    """How much the right caption lowers the UNet's epsilon error on `n` held-out procedural
    pictures, against the next picture's caption (same noise): (wrong - right) / wrong per
    timestep, 0 when the UNet ignores its captions. Learning the captions comes late: 200 UNet
    steps at batch 32 reach ~0.1% at t=300, 1000 steps ~23%."""
    gen = torch.Generator().manual_seed(seed * 1009 + 5)
    pics = procedural_images(gen, n, size)
    lat = vae.encode(pics.images).latent_dist.mean * vae.config.scaling_factor
    ctx, pooled = encode(pics.captions)
    abar = alphas_cumprod()
    time_ids = full_image_time_ids(size, size).expand(n, -1)
    out = {}
    for t in timesteps:
        noise = torch.randn(lat.shape, generator=gen)
        ts = torch.full((n,), t)
        noisy = add_noise(lat, noise, abar, ts)
        err = [F.mse_loss(predict(unet, noisy, ts, c, p, time_ids), noise).item()
               for c, p in ((ctx, pooled), (ctx.roll(1, 0), pooled.roll(1, 0)))]
        out[f"t{t}"] = (err[1] - err[0]) / err[1]
    return out


def train_unet(
    unet: torch.nn.Module, pool: UnetPool, gen: torch.Generator, steps: int, batch: int,
    size: int, lr: float, caption_dropout: float = 0.1,
) -> list[float]:
    """Epsilon-prediction steps on the encoded pool (only the UNet trains, so nothing is
    re-encoded per step), DDPM scaled-linear 0.00085..0.012 over 1000. `caption_dropout` of
    the samples see the empty caption, so classifier-free guidance has an unconditional model."""
    abar = alphas_cumprod()
    time_ids = full_image_time_ids(size, size)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    sched = cosine_decay(opt, steps)
    unet.train()
    losses = []
    n = len(pool.latents)
    for _ in _steps(steps, "unet"):
        idx = torch.randint(0, n, (batch,), generator=gen)
        drop = torch.rand(batch, generator=gen) < caption_dropout
        ctx = torch.where(drop[:, None, None], pool.null_context, pool.context[idx])
        pooled = torch.where(drop[:, None], pool.null_pooled, pool.pooled[idx])
        lat = pool.latents[idx]
        noise = torch.randn(lat.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noisy = add_noise(lat, noise, abar, t)
        pred = predict(unet, noisy, t, ctx, pooled, time_ids.expand(batch, -1))
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    unet.eval()
    return losses
