"""Independent per-image re-statements of sd-scripts v0.8.7 bucketing (read from its public source:
library/model_util.py make_bucket_resolutions, library/train_util.py BucketManager.select_bucket,
get_crop_ltrb and trim_and_resize_if_required), written as plain slow Python loops so the
vectorised kxl code can be checked against them."""

from __future__ import annotations

import math


def bucket_resolutions(base: int, min_size: int, max_size: int, step: int) -> list[tuple[int, int]]:
    area = base * base
    found = {(int(math.sqrt(area) // step) * step,) * 2}
    w = min_size
    while w <= max_size:
        h = min(max_size, int((area // w) // step) * step)
        if h >= min_size:
            found |= {(w, h), (h, w)}
        w += step
    return sorted(found)


def select_predefined(w: int, h: int, resos: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(bucket index, resized w, resized h)."""
    ar = w / h
    if (w, h) in resos:
        idx = resos.index((w, h))
    else:
        errs = [abs(bw / bh - ar) for bw, bh in resos]
        idx = errs.index(min(errs))  # first minimum
    bw, bh = resos[idx]
    scale = bh / h if ar > bw / bh else bw / w
    return idx, int(w * scale + 0.5), int(h * scale + 0.5)


def _steps(x: float, step: int) -> int:
    x = int(x + 0.5)
    return x - x % step


def select_no_upscale(w: int, h: int, max_area: int, step: int) -> tuple[int, int, int, int]:
    """(bucket w, bucket h, resized w, resized h)."""
    ar = w / h
    if w * h > max_area:
        rw = math.sqrt(max_area * ar)
        rh = max_area / rw
        bwr = _steps(rw, step)
        bhw = _steps(bwr / ar, step)
        bhr = _steps(rh, step)
        bwh = _steps(bhr * ar, step)
        if abs(bwr / bhw - ar) < abs(bwh / bhr - ar):
            size = (bwr, int(bwr / ar + 0.5))
        else:
            size = (int(bhr * ar + 0.5), bhr)
    else:
        size = (w, h)
    return size[0] - size[0] % step, size[1] - size[1] % step, size[0], size[1]


def kohya_crop_top_left(bucket: tuple[int, int], orig: tuple[int, int]) -> tuple[int, int]:
    """(top, left) as sd-scripts 0.8.7 passes it to the SDXL size embedding (no flip)."""
    bucket_ar, image_ar = bucket[0] / bucket[1], orig[0] / orig[1]
    if bucket_ar > image_ar:
        fw, fh = bucket[1] * image_ar, bucket[1]
    else:
        fw, fh = bucket[0], bucket[0] / image_ar
    return int((bucket[1] - fh) // 2), int((bucket[0] - fw) // 2)


def centre_crop(resized: tuple[int, int], bucket: tuple[int, int]) -> tuple[int, int]:
    """(left, top) of the crop trim_and_resize_if_required makes without random_crop."""
    return (resized[0] - bucket[0]) // 2, (resized[1] - bucket[1]) // 2
