"""Stage 6 against sd-scripts v0.8.7 behaviour (re-stated as slow loops in sdscripts_ref.py)."""

from __future__ import annotations

import numpy as np
import pytest
import sdscripts_ref as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.buckets.assign import assign, crop_conditioning, nearest_bucket
from kxl.buckets.resolutions import make_bucket_set
from kxl.errors import KxlError

EPS = dict(resolution=1024, min_size=256, max_size=4096, step=64)


def test_epsilon_bucket_set_has_97_buckets() -> None:
    assert len(make_bucket_set(1024, 256, 4096, 64)) == 97


@pytest.mark.parametrize("params", [
    (1024, 256, 4096, 64), (1024, 256, 2048, 64), (512, 256, 1024, 64), (768, 320, 1536, 32),
    (64, 32, 128, 32), (1000, 200, 3000, 48), (640, 64, 640, 64),
])
def test_bucket_set_equals_reference(params: tuple[int, int, int, int]) -> None:
    assert make_bucket_set(*params).tolist() == [list(r) for r in ref.bucket_resolutions(*params)]


def _sizes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 6000, n)
    h = np.maximum(1, (w / np.exp(rng.normal(0, 0.6, n))).astype(np.int64))
    return w, h


def test_predefined_assignment_equals_reference() -> None:
    resos = ref.bucket_resolutions(1024, 256, 4096, 64)
    w, h = _sizes(3000, 0)
    # exact bucket sizes must win even where another bucket has the same aspect ratio error
    w = np.concatenate([w, [r[0] for r in resos], [2048, 1000]])
    h = np.concatenate([h, [r[1] for r in resos], [1024, 1000]])
    a = assign(np.arange(len(w)), w, h, no_upscale=False, crop_convention="correct", **EPS)
    for i in range(len(w)):
        idx, rw, rh = ref.select_predefined(int(w[i]), int(h[i]), resos)
        bucket = resos[idx]
        assert (a.bucket[i], a.resized_w[i], a.resized_h[i]) == (idx, rw, rh), (w[i], h[i])
        assert (a.crop_left[i], a.crop_top[i]) == ref.centre_crop((rw, rh), bucket)


def test_ties_go_to_first_bucket_and_exact_size_wins() -> None:
    # aspect 1.0 lies exactly between 0.5 and 1.5: the first bucket in the set's order wins
    w, h = np.array([100, 100]), np.array([100, 100])
    assert nearest_bucket(w, h, np.array([[64, 128], [96, 64]])).tolist() == [0, 0]
    # same aspect ratio twice: the first, unless the image has exactly the other's size
    same_ar = np.array([[64, 64], [128, 128]])
    assert nearest_bucket(np.array([100, 128]), np.array([100, 128]), same_ar).tolist() == [0, 1]


def test_no_upscale_equals_reference() -> None:
    w, h = _sizes(3000, 1)
    keep = (w >= 64) & (h >= 64)
    w, h = w[keep], h[keep]
    a = assign(np.arange(len(w)), w, h, no_upscale=True, crop_convention="correct", **EPS)
    for i in range(len(w)):
        bw, bh, rw, rh = ref.select_no_upscale(int(w[i]), int(h[i]), 1024 * 1024, 64)
        got = a.bucket_set[a.bucket[i]]
        assert (got[0], got[1], a.resized_w[i], a.resized_h[i]) == (bw, bh, rw, rh)
    assert a.bucket_set.tolist() == sorted(a.bucket_set.tolist())


def test_kohya_crop_conditioning_equals_reference_and_issue_1443() -> None:
    w, h = _sizes(2000, 2)
    a = assign(np.arange(len(w)), w, h, no_upscale=False, crop_convention="kohya-0.8.7", **EPS)
    for i in range(len(w)):
        bucket = tuple(int(x) for x in a.bucket_set[a.bucket[i]])
        assert (a.cond_crop_top[i], a.cond_crop_left[i]) == ref.kohya_crop_top_left(
            bucket, (int(w[i]), int(h[i])))
    # The example in sd-scripts issue 1443: bucket 512x2048, image 512x4096. The image is cropped
    # top and bottom (1024 px each side) but 0.8.7 reports a left offset of 128 and top 0.
    one = [np.array([v]) for v in (512, 4096, 512, 2048, 0, 1024)]
    assert [int(x[0]) for x in crop_conditioning("kohya-0.8.7", *one)] == [0, 128]
    assert [int(x[0]) for x in crop_conditioning("correct", *one)] == [1024, 0]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8000), st.integers(1, 8000), st.booleans())
def test_resize_covers_bucket_and_crop_stays_inside(w: int, h: int, no_upscale: bool) -> None:
    try:
        a = assign(np.array([7]), np.array([w]), np.array([h]), no_upscale=no_upscale,
                   crop_convention="correct", **EPS)
    except KxlError:
        assert no_upscale  # only degenerate no-upscale sizes are refused
        return
    bw, bh = a.bucket_set[a.bucket[0]]
    assert a.resized_w[0] >= bw and a.resized_h[0] >= bh
    assert a.crop_left[0] >= 0 and a.crop_left[0] + bw <= a.resized_w[0]
    assert a.crop_top[0] >= 0 and a.crop_top[0] + bh <= a.resized_h[0]
    # cover-resize crops at most one axis (up to rounding); no_upscale may trim both to `step`
    if not no_upscale:
        assert min(a.crop_left[0], a.crop_top[0]) <= 1


def test_bad_sizes_name_the_image() -> None:
    with pytest.raises(KxlError, match="id 42"):
        assign(np.array([42]), np.array([0]), np.array([10]), no_upscale=False,
               crop_convention="correct", **EPS)
    with pytest.raises(KxlError, match="id 9 .*empty bucket"):
        assign(np.array([9]), np.array([10]), np.array([10]), no_upscale=True,
               crop_convention="correct", **EPS)
