"""The bucket cache: one safetensors file per bucket, of resized + centre-cropped images.

Storage options (`buckets.cache`): `pixels` writes `cache/{bucket:03d}.safetensors` with `ids`
int64 [n] (sorted) and `pixels` uint8 [n, h, w, 3]; `none` writes no pixels and training decodes
`images/files/...` itself through `resize_and_crop` with the same recorded sizes, so both paths
give the same arrays. `latents` encodes those same arrays with the base model's VAE and stores
the posterior, `mean` and `std` float32 [n, 4, h/8, w/8] (unscaled): unlike sd-scripts'
`--cache_latents`, which freezes one sample per image, training still draws a fresh sample per
step from its own generator, so the math is the pixel path's. `cache/index.json` lists what was
written either way, so it is the rule's one output.

Resize: sd-scripts 0.8.7 uses cv2 INTER_AREA. kxl uses Pillow (no OpenCV dependency): `box` is
area averaging too, but Pillow's fixed-point rounding differs from cv2's, so pixels may differ by
a level or two from an OpenCV run; upscaling (small images) differs more, since cv2's INTER_AREA
falls back to a bilinear-like filter there. Bytes are deterministic for a given Pillow version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kxl.atomic import atomic_path
from kxl.errors import KxlError
from kxl.hashing import sha256_file

_CACHE_FILE = re.compile(r"^\d{3,}\.safetensors$")


def resize_and_crop(
    path: str | os.PathLike[str], row: dict[str, int], resample: str = "box"
) -> np.ndarray:
    """Decode one image, cover-resize it to (resized_w, resized_h), centre-crop to the bucket."""
    from PIL import Image

    filters = {"box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}
    with Image.open(path) as im:
        img = im.convert("RGB")
    if img.size != (row["orig_w"], row["orig_h"]):
        raise KxlError(f"{path}: decoded size {img.size[0]}x{img.size[1]} != recorded "
                       f"{row['orig_w']}x{row['orig_h']}; re-run the images and buckets stages")
    size = (row["resized_w"], row["resized_h"])
    if img.size != size:  # like sd-scripts, an image already at its resized size is not filtered
        img = img.resize(size, filters[resample])
    left, top = row["crop_left"], row["crop_top"]
    img = img.crop((left, top, left + row["bucket_w"], top + row["bucket_h"]))
    return np.asarray(img, dtype=np.uint8)


def _bucket_parts(files: pl.DataFrame, buckets: pl.DataFrame) -> Iterator[tuple[int, pl.DataFrame]]:
    """(bucket, its rows sorted by id, with the dataset's `file`) for every non-empty bucket."""
    rows = buckets.join(files.select("id", "file"), on="id", how="left").sort("bucket", "id")
    missing = rows.filter(pl.col("file").is_null())
    if missing.height:
        raise KxlError(f"images/dataset.parquet: id {missing['id'][0]} is in buckets.parquet but "
                       "not in the dataset; re-run assign-buckets on this dataset")
    for (b,), part in rows.group_by("bucket", maintain_order=True):  # one loop per bucket
        yield int(b), part  # type: ignore[arg-type]


def _bucket_pixels(images_root: Path, part: pl.DataFrame, resample: str) -> np.ndarray:
    return np.stack([resize_and_crop(images_root / r["file"], r, resample)
                     for r in part.iter_rows(named=True)])


def _write_bucket(out_dir: Path, bucket: int, tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write one bucket's file atomically; return its index entry."""
    from safetensors.numpy import save_file

    name = f"{bucket:03d}.safetensors"
    with atomic_path(out_dir / name) as tmp:
        save_file(tensors, str(tmp))
        os.chmod(tmp, 0o644)  # safetensors creates 0600; match the other artifacts
    return {"bucket": bucket, "file": name, "count": len(tensors["ids"]),
            "sha256": sha256_file(out_dir / name)}


def write_pixel_cache(
    images_root: Path, files: pl.DataFrame, buckets: pl.DataFrame, out_dir: Path, resample: str
) -> list[dict[str, Any]]:
    """Write one safetensors file per non-empty bucket; return their index entries."""
    entries = []
    for b, part in _bucket_parts(files, buckets):
        pixels = _bucket_pixels(images_root, part, resample)
        ids = part["id"].to_numpy().astype(np.int64)
        entries.append(_write_bucket(out_dir, b, {"ids": ids, "pixels": pixels}))
    return entries


def write_latent_cache(
    images_root: Path,
    files: pl.DataFrame,
    buckets: pl.DataFrame,
    out_dir: Path,
    resample: str,
    vae: Any,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Encode each bucket's pixel-cache arrays with `vae` (in eval mode, on its device) in
    batches of `batch_size`; write their posterior mean/std per bucket; return index entries."""
    import torch
    from tqdm import tqdm

    from kxl.model.vae import encode_posterior

    if batch_size < 1:
        raise KxlError(f"cache-buckets: --batch-size {batch_size} must be >= 1")
    device = next(vae.parameters()).device
    vae.eval()
    entries = []
    with tqdm(total=buckets.height, desc="encode latents", unit="img", mininterval=10) as bar:
        for b, part in _bucket_parts(files, buckets):
            mean, std = [], []
            for lo in range(0, part.height, batch_size):
                px = _bucket_pixels(images_root, part.slice(lo, batch_size), resample)
                post = encode_posterior(vae, torch.from_numpy(px).to(device))
                # contiguous: the posterior is a strided view (chunk of the encoder output,
                # which may be channels-last), and safetensors stores the raw buffer
                mean.append(post.mean.float().cpu().contiguous().numpy())
                std.append(post.std.float().cpu().contiguous().numpy())
                bar.update(len(px))
            ids = part["id"].to_numpy().astype(np.int64)
            tensors = {"ids": ids, "mean": np.concatenate(mean), "std": np.concatenate(std)}
            entries.append(_write_bucket(out_dir, b, tensors))
    return entries


def remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete cache files of an earlier config so the directory matches index.json exactly."""
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            if _CACHE_FILE.match(p.name) and p.name not in keep:
                p.unlink()
