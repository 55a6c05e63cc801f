"""Bucket assignment, cover-resize, centre crop and SDXL crop conditioning, vectorised.

Behaviour follows sd-scripts v0.8.7 `BucketManager.select_bucket` / `trim_and_resize_if_required`
/ `get_crop_ltrb` (read from the public source, reimplemented over numpy arrays):

- predefined buckets: an image whose (w, h) equals a bucket goes there; otherwise to the bucket of
  smallest |bucket_ar - image_ar| (ties: the first bucket in (w, h) order). The image is scaled so
  that it covers the bucket (scale by height when the image is wider than the bucket, else by
  width), each side rounded half up as int(x + 0.5), then centre-cropped ((resized - bucket) // 2).
- no_upscale: images larger than resolution**2 pixels are shrunk to that area, rounding one side
  to `step` (whichever keeps the aspect ratio better); the bucket is the resized size rounded down
  to `step`; smaller images are only cropped. Buckets are then the distinct sizes used, sorted.
- SDXL crop conditioning (original size, crop top-left, target size): `correct` reports the centre
  crop actually made, in resized-image pixels (SDXL paper, Algorithm 1). `kohya-0.8.7` reproduces
  the defect of that version (sd-scripts issue 1443): it fits (not covers) the original aspect
  ratio inside the bucket and reports the half-margin of that fit, i.e. a non-zero offset on the
  axis that was NOT cropped and 0 on the axis that was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kxl.buckets.resolutions import make_bucket_set
from kxl.errors import KxlError

_CHUNK = 1 << 16  # images per argmin block: bounds the [images x buckets] error matrix


@dataclass(frozen=True)
class Assignment:
    """Per-image arrays (int64, same length) plus the bucket set (int64 [k, 2] w, h)."""

    bucket_set: np.ndarray
    bucket: np.ndarray
    resized_w: np.ndarray
    resized_h: np.ndarray
    crop_left: np.ndarray
    crop_top: np.ndarray
    cond_crop_top: np.ndarray
    cond_crop_left: np.ndarray


def _half_up(x: np.ndarray) -> np.ndarray:
    """int(x + 0.5) for non-negative x (Python's int() truncates, like astype)."""
    return (x + 0.5).astype(np.int64)


def nearest_bucket(width: np.ndarray, height: np.ndarray, bucket_set: np.ndarray) -> np.ndarray:
    """Bucket index per image: exact (w, h) match first, else the smallest aspect-ratio error."""
    bucket_ar = bucket_set[:, 0] / bucket_set[:, 1]
    aspect = width / height
    out = np.empty(len(width), dtype=np.int64)
    for s in range(0, len(width), _CHUNK):  # a loop over blocks, not images
        err = np.abs(bucket_ar[None, :] - aspect[s : s + _CHUNK, None])
        out[s : s + _CHUNK] = err.argmin(axis=1)  # argmin returns the first minimum: the tie rule
    keys = bucket_set[:, 0] << 32 | bucket_set[:, 1]  # sorted, since the set is sorted by (w, h)
    img_keys = width.astype(np.int64) << 32 | height.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, img_keys), len(keys) - 1)
    exact = keys[pos] == img_keys
    out[exact] = pos[exact]
    return out


def cover_resize(
    width: np.ndarray, height: np.ndarray, bucket_w: np.ndarray, bucket_h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest aspect-preserving size that covers the bucket, each side rounded half up."""
    wider = width / height > bucket_w / bucket_h
    scale = np.where(wider, bucket_h / height, bucket_w / width)
    return _half_up(width * scale), _half_up(height * scale)


def _round_to_steps(x: np.ndarray, step: int) -> np.ndarray:
    r = _half_up(x)
    return r - r % step


def no_upscale_sizes(
    width: np.ndarray, height: np.ndarray, max_area: int, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bucket_w, bucket_h, resized_w, resized_h) when images are only ever shrunk."""
    aspect = width / height
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate sizes are rejected below
        rw = np.sqrt(max_area * aspect)
        rh = max_area / rw
        w_first = _round_to_steps(rw, step)
        h_of_w = _round_to_steps(w_first / aspect, step)
        h_first = _round_to_steps(rh, step)
        w_of_h = _round_to_steps(h_first * aspect, step)
        keep_w = np.abs(w_first / h_of_w - aspect) < np.abs(w_of_h / h_first - aspect)
        res_w = np.where(keep_w, w_first, _half_up(h_first * aspect))
        res_h = np.where(keep_w, _half_up(w_first / aspect), h_first)
    big = width.astype(np.int64) * height > max_area
    res_w = np.where(big, res_w, width).astype(np.int64)
    res_h = np.where(big, res_h, height).astype(np.int64)
    return res_w - res_w % step, res_h - res_h % step, res_w, res_h


def crop_conditioning(
    convention: str,
    width: np.ndarray,
    height: np.ndarray,
    bucket_w: np.ndarray,
    bucket_h: np.ndarray,
    crop_left: np.ndarray,
    crop_top: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """SDXL crop top-left conditioning (top, left) per `convention` (see module doc)."""
    if convention == "correct":
        return crop_top.copy(), crop_left.copy()
    if convention != "kohya-0.8.7":
        raise KxlError(f"config buckets.crop_convention: unknown {convention!r}; "
                       "use 'kohya-0.8.7' or 'correct'")
    image_ar = width / height
    fit_by_h = bucket_w / bucket_h > image_ar
    fit_w = np.where(fit_by_h, bucket_h * image_ar, bucket_w)
    fit_h = np.where(fit_by_h, bucket_h, bucket_w / image_ar)
    left = np.floor_divide(bucket_w - fit_w, 2)  # float floor division, as in the reference
    top = np.floor_divide(bucket_h - fit_h, 2)
    return top.astype(np.int64), left.astype(np.int64)


def _check_sizes(ids: np.ndarray, width: np.ndarray, height: np.ndarray) -> None:
    bad = np.flatnonzero((width <= 0) | (height <= 0))
    if bad.size:
        i = bad[0]
        raise KxlError(f"images/dataset.parquet: id {ids[i]} has size {width[i]}x{height[i]}; "
                       "width and height must be > 0 (re-run the images stage)")


def assign(
    ids: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    *,
    resolution: int,
    min_size: int,
    max_size: int,
    step: int,
    no_upscale: bool,
    crop_convention: str,
) -> Assignment:
    """Assign every image to a bucket and compute its resize, crop and SDXL conditioning."""
    width = np.asarray(width, dtype=np.int64)
    height = np.asarray(height, dtype=np.int64)
    _check_sizes(ids, width, height)
    if no_upscale:
        bw, bh, rw, rh = no_upscale_sizes(width, height, resolution * resolution, step)
        bad = np.flatnonzero((bw <= 0) | (bh <= 0))
        if bad.size:
            i = bad[0]
            raise KxlError(f"images/dataset.parquet: id {ids[i]} ({width[i]}x{height[i]}) gives "
                           f"an empty bucket with step {step}; drop the image or lower "
                           "buckets.step")
        bucket_set, bucket = np.unique(np.stack([bw, bh], axis=1), axis=0, return_inverse=True)
        bucket = bucket.reshape(-1)
    else:
        bucket_set = make_bucket_set(resolution, min_size, max_size, step)
        bucket = nearest_bucket(width, height, bucket_set)
        bw, bh = bucket_set[bucket, 0], bucket_set[bucket, 1]
        rw, rh = cover_resize(width, height, bw, bh)
    crop_left, crop_top = (rw - bw) // 2, (rh - bh) // 2
    cond_top, cond_left = crop_conditioning(
        crop_convention, width, height, bw, bh, crop_left, crop_top
    )
    return Assignment(bucket_set, bucket, rw, rh, crop_left, crop_top, cond_top, cond_left)
