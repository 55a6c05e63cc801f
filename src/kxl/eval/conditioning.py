"""Prompt-conditioning probe: does a model know which character a reference picture shows?

CCIP scores sampled pictures, so a model that only learnt the dataset's style (background,
framing, palette of the whole set) can gain on it without knowing any character. This probe
asks the model directly: noise a reference picture of character c at a fixed timestep, then
measure the epsilon-prediction error with c's prompt and with the prompts of a few other
characters (the distractors). A model that draws c from its name predicts the noise better
with the right prompt. Per timestep it reports

- advantage = (mean wrong-prompt error - mean right-prompt error) / mean wrong-prompt error,
  0 for a model that ignores the character tag (the ratio does not depend on whether the error
  is measured on epsilon, x0 or v: at a fixed timestep they differ by one constant factor);
- top-1 = how often the right prompt has the smallest error (chance: 1 / (distractors + 1)).

Noise, timesteps and distractors come from the run seed alone, so every model is probed on the
same noisy latents; prompts are the generation prompts (`kxl.eval.prompts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kxl.errors import KxlError


def advantage(losses: np.ndarray, right: int = 0) -> dict[str, float]:
    """Summary of an [images, candidates] error matrix whose column `right` is the right prompt."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 2 or losses.shape[1] < 2 or losses.shape[0] < 1:
        raise KxlError(f"conditioning probe: need an [images, >= 2 prompts] error matrix, got "
                       f"shape {losses.shape}")
    if not np.isfinite(losses).all():
        raise KxlError("conditioning probe: non-finite denoising error (the model output NaN/inf)")
    k = losses.shape[1]
    r = losses[:, right]
    wrong = (losses.sum(axis=1) - r) / (k - 1)
    return {
        "right": float(r.mean()),
        "wrong": float(wrong.mean()),
        "advantage": float((wrong.mean() - r.mean()) / wrong.mean()),
        "top1": float((losses.argmin(axis=1) == right).mean()),
        "chance": 1.0 / k,
    }


def candidates(labels: np.ndarray, n_characters: int, distractors: int, seed: int) -> np.ndarray:
    """[images, 1 + d] prompt indices: each image's own character first, then d distinct other
    characters drawn from `seed` (all others when there are no more than d)."""
    labels = np.asarray(labels, dtype=np.int64)
    if n_characters < 2:
        raise KxlError("conditioning probe: needs at least 2 characters")
    if labels.size and (labels.min() < 0 or labels.max() >= n_characters):
        raise KxlError(f"conditioning probe: character index out of range 0..{n_characters - 1}")
    d = min(distractors, n_characters - 1)
    keys = np.random.default_rng([seed, 7]).random((labels.size, n_characters))
    keys[np.arange(labels.size), labels] = np.inf  # never its own character as a distractor
    others = np.argsort(keys, axis=1, kind="stable")[:, :d]
    return np.concatenate([labels[:, None], others], axis=1)


def probe_set(characters: pl.DataFrame, refs: pl.DataFrame, prompts: pl.DataFrame,
              refs_per_character: int) -> tuple[list[str], np.ndarray, list[str]]:
    """(one prompt per character in rank order, each reference's character rank, reference
    files): the first `refs_per_character` references, prompts of generation image 0."""
    chosen = refs.filter(pl.col("ref_index") < refs_per_character).sort(["rank", "ref_index"])
    first = prompts.filter(pl.col("image") == 0).sort("rank")
    if first["rank"].to_list() != characters.sort("rank")["rank"].to_list():
        raise KxlError("conditioning probe: the generation prompts do not cover every character")
    return first["prompt"].to_list(), chosen["rank"].to_numpy(), chosen["file"].to_list()


def reference_pixels(files: list[str], images_root: Path, width: int, height: int) -> np.ndarray:
    """[n, 3, h, w] float32 in [-1, 1]: the buckets' cover-resize (box) and centre crop, by the
    buckets cache's own `resize_and_crop`."""
    from PIL import Image

    from kxl.buckets.assign import cover_resize
    from kxl.buckets.cache import resize_and_crop

    out = np.empty((len(files), 3, height, width), np.float32)
    for i, f in enumerate(files):  # a few references per character, not the dataset
        path = images_root / f
        try:
            with Image.open(path) as im:  # header only: the size
                w0, h0 = im.size
            rw, rh = cover_resize(np.array([w0]), np.array([h0]), np.array([width]),
                                  np.array([height]))
            w, h = int(rw[0]), int(rh[0])
            row = {"orig_w": w0, "orig_h": h0, "resized_w": w, "resized_h": h,
                   "crop_left": (w - width) // 2, "crop_top": (h - height) // 2,
                   "bucket_w": width, "bucket_h": height}
            arr = resize_and_crop(path, row, "box").astype(np.float32)
        except OSError as e:
            raise KxlError(f"{path}: reference image unreadable ({e})") from e
        out[i] = arr.transpose(2, 0, 1) / 127.5 - 1.0
    return out


def probe_noise(seed: int, timestep: int, shape: tuple[int, ...]) -> Any:
    """The probe's noise at `timestep`: one CPU generator per (seed, timestep), so it does not
    depend on the device, the model or which other timesteps are probed."""
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1009 + timestep))


def posterior_means(vae: Any, pixels: np.ndarray, device: str, batch_size: int) -> Any:
    """Scaled float32 VAE posterior means of [n, 3, h, w] pixels in [-1, 1], in batches."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(pixels).to(device, vae.dtype)
        lat = torch.cat([vae.encode(x[i:i + batch_size]).latent_dist.mean
                         for i in range(0, len(x), batch_size)]).float()
    return lat * vae.config.scaling_factor


def denoising_errors(pipe: Any, device: str, pixels: np.ndarray, prompts: list[str],
                     cands: np.ndarray, timesteps: list[int], seed: int,
                     batch_size: int) -> np.ndarray:
    """[timesteps, images, candidates] mean squared epsilon error of `pipe`'s UNet.

    Latents are the VAE posterior means; the noise of (timestep, image) comes from a generator
    seeded by (seed, timestep), identical for every model with the same latent shape."""
    import torch

    from kxl.model.diffusion import add_noise, full_image_time_ids, predict

    unet = pipe.unet
    dtype = unet.dtype
    with torch.no_grad():
        ctx, _, pooled, _ = pipe.encode_prompt(prompts, device=device,
                                               do_classifier_free_guidance=False)
        lat = posterior_means(pipe.vae, pixels, device, batch_size)
        h, w = pixels.shape[2:]
        time_ids = full_image_time_ids(h, w, dtype, device)
        # the model's own schedule (its scheduler config), not SDXL's constants
        abar = pipe.scheduler.alphas_cumprod.to(device, torch.float32)
        n, k = cands.shape
        img_idx = np.repeat(np.arange(n), k)
        prm_idx = cands.reshape(-1)
        out = np.empty((len(timesteps), n, k), np.float64)
        for ti, t in enumerate(timesteps):
            noise = probe_noise(int(seed), int(t), tuple(lat.shape)).to(device)
            noisy = add_noise(lat, noise, abar, torch.full((len(lat),), t, device=device))
            errs = []
            for s in range(0, len(img_idx), batch_size):
                ii = torch.from_numpy(img_idx[s:s + batch_size]).to(device)
                pp = torch.from_numpy(prm_idx[s:s + batch_size]).to(device)
                b = len(ii)
                pred = predict(unet, noisy[ii].to(dtype), torch.full((b,), t, device=device),
                               ctx[pp], pooled[pp], time_ids.expand(b, -1))
                errs.append(((pred.float() - noise[ii]) ** 2).mean(dim=(1, 2, 3)).cpu())
            out[ti] = torch.cat(errs).numpy().reshape(n, k)
    return out


def summarize(errors: np.ndarray, timesteps: list[int], labels: np.ndarray,
              characters: pl.DataFrame) -> dict[str, Any]:
    """Per timestep and overall (errors averaged over timesteps) plus per-character top-1."""
    per_t = [{"timestep": int(t), **advantage(errors[i])} for i, t in enumerate(timesteps)]
    mean = errors.mean(axis=0)
    hits = mean.argmin(axis=1) == 0
    names = characters.sort("rank")["character"].to_list()
    per_char = [{"rank": int(r), "character": names[r], "images": int((labels == r).sum()),
                 "top1": float(hits[labels == r].mean())} for r in np.unique(labels)]
    return {"timesteps": per_t, "overall": advantage(mean), "characters": per_char,
            "images": int(errors.shape[1]), "candidates": int(errors.shape[2])}
