"""The bucket cache: resized + centre-cropped uint8 pixels, one safetensors file per bucket.

Storage options (`buckets.cache`): `pixels` writes `cache/{bucket:03d}.safetensors` with `ids`
int64 [n] (sorted) and `pixels` uint8 [n, h, w, 3]; `none` writes no pixels and training decodes
`images/files/...` itself through `resize_and_crop` with the same recorded sizes, so both paths
give the same arrays. `latents` (VAE latents, what sd-scripts caches) is planned once a VAE
exists. `cache/index.json` lists what was written either way, so it is the rule's one output.

Resize: sd-scripts 0.8.7 uses cv2 INTER_AREA. kxl uses Pillow (no OpenCV dependency): `box` is
area averaging too, but Pillow's fixed-point rounding differs from cv2's, so pixels may differ by
a level or two from an OpenCV run; upscaling (small images) differs more, since cv2's INTER_AREA
falls back to a bilinear-like filter there. Bytes are deterministic for a given Pillow version.
"""

from __future__ import annotations

import os
import re
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


def write_pixel_cache(
    images_root: Path, files: pl.DataFrame, buckets: pl.DataFrame, out_dir: Path, resample: str
) -> list[dict[str, Any]]:
    """Write one safetensors file per non-empty bucket; return their index entries."""
    from safetensors.numpy import save_file

    rows = buckets.join(files.select("id", "file"), on="id", how="left").sort("bucket", "id")
    missing = rows.filter(pl.col("file").is_null())
    if missing.height:
        raise KxlError(f"images/dataset.parquet: id {missing['id'][0]} is in buckets.parquet but "
                       "not in the dataset; re-run assign-buckets on this dataset")
    entries = []
    for (b,), part in rows.group_by("bucket", maintain_order=True):  # one loop per bucket
        pixels = np.stack([resize_and_crop(images_root / r["file"], r, resample)
                           for r in part.iter_rows(named=True)])
        name = f"{int(b):03d}.safetensors"
        with atomic_path(out_dir / name) as tmp:
            save_file({"ids": part["id"].to_numpy().astype(np.int64), "pixels": pixels}, str(tmp))
            os.chmod(tmp, 0o644)  # safetensors creates 0600; match the other artifacts
        entries.append({"bucket": int(b), "file": name, "count": part.height,
                        "sha256": sha256_file(out_dir / name)})
    return entries


def remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete cache files of an earlier config so the directory matches index.json exactly."""
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            if _CACHE_FILE.match(p.name) and p.name not in keep:
                p.unlink()
