"""The predefined bucket set (sd-scripts v0.8.7 `model_util.make_bucket_resolutions` behaviour).

For a square base resolution R the buckets are: the square of side floor(R / step) * step, and
for every width w = min_size, min_size + step, ... <= max_size the pair (w, h) and (h, w) with
h = min(max_size, floor(R*R // w / step) * step), kept when h >= min_size. Duplicates collapse and
the set is sorted by (width, height): that order is the bucket id (1024/256/4096/64 -> 97 buckets).
"""

from __future__ import annotations

import numpy as np


def make_bucket_set(resolution: int, min_size: int, max_size: int, step: int) -> np.ndarray:
    """Return int64 [k, 2] (width, height) rows sorted by width then height."""
    area = resolution * resolution
    side = int(np.sqrt(area) // step) * step
    widths = np.arange(min_size, max_size + 1, step, dtype=np.int64)
    heights = np.minimum(max_size, (area // widths) // step * step)
    ok = heights >= min_size
    pairs = np.concatenate(
        [
            np.array([[side, side]], dtype=np.int64),
            np.stack([widths[ok], heights[ok]], axis=1),
            np.stack([heights[ok], widths[ok]], axis=1),
        ]
    )
    return np.unique(pairs, axis=0)  # unique rows, lexicographically sorted like sorted(set)
