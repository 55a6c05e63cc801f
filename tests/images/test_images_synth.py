"""kxl synth-images: determinism, layout, sizes, defects and per-character visual identity."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from images_fixtures import CHARACTERS, make_kept, make_tags, synth_cfg
from PIL import Image

from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.images.synth import choose_defects, scaled_sizes, synth_shards

DEFECTS = dict(n_missing=2, n_truncated=2, n_zero_byte=1, n_oversized=1)


def members(shards: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    for p in sorted(shards.glob("data-*.tar")):
        with tarfile.open(p) as tf:
            for m in tf:
                out[m.name] = (m, tf.extractfile(m).read())
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    synth_shards(make_kept(), make_tags(), synth_cfg(**DEFECTS), out)
    return out


def test_two_runs_give_identical_shard_bytes(shards: Path, tmp_path: Path) -> None:
    # the second run also uses 2 worker processes: scheduling must not change a byte
    synth_shards(make_kept(), make_tags(), synth_cfg(**DEFECTS), tmp_path, workers=2)
    a = {p.name: sha256_file(p) for p in shards.iterdir()}
    b = {p.name: sha256_file(p) for p in tmp_path.iterdir()}
    assert a == b and len(a) > 10


def test_other_seed_changes_the_pixels(shards: Path, tmp_path: Path) -> None:
    synth_shards(make_kept(), make_tags(), synth_cfg(**{**DEFECTS, "seed": 1}), tmp_path)
    assert members(shards).keys() != members(tmp_path).keys() or any(
        sha256_file(p) != sha256_file(shards / p.name) for p in tmp_path.iterdir()
    )


def test_layout_metadata_and_sizes(shards: Path) -> None:
    kept = make_kept()
    got = members(shards)
    defects = choose_defects(kept["id"].to_numpy(), synth_cfg(**DEFECTS))
    broken = set(np.concatenate(list(defects.values())).tolist())
    w, h = scaled_sizes(kept["width"].to_numpy(), kept["height"].to_numpy(), 64)
    for pid, ext, sw, sh, width, height in zip(
        kept["id"], kept["file_ext"], w, h, kept["width"], kept["height"], strict=True
    ):
        name = f"{pid}.{ext}"
        if pid in broken:
            assert (name not in got) == (pid in defects["missing"])
            continue
        info, data = got[name]
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert info.isreg()
        assert (shards / f"data-{pid % 1000:04d}.tar").is_file()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.size == (sw, sh), name
            assert im.format == {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}[ext]
        assert max(sw, sh) <= 64 and abs(sw / sh - width / height) < 0.5 * max(1, width / height)
    # the extremes survive: 1:8 and tiny
    assert {(64, 8), (8, 64), (16, 24), (24, 16)} <= set(zip(w.tolist(), h.tolist(), strict=True))


def test_defects_are_exactly_as_configured(shards: Path) -> None:
    kept = make_kept()
    got = members(shards)
    assert len(got) == kept.height - DEFECTS["n_missing"]
    sizes = [len(d) for _, d in got.values()]
    assert sizes.count(0) == DEFECTS["n_zero_byte"]
    bombs = [d for _, d in got.values() if d.startswith(b"\x89PNG") and len(d) < 120]
    assert len(bombs) == DEFECTS["n_oversized"]
    truncated = 0
    for _, d in got.values():
        if d and d not in bombs:
            try:
                with Image.open(io.BytesIO(d)) as im:
                    im.load()
            except Exception:
                truncated += 1
    assert truncated == DEFECTS["n_truncated"]


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 20000), h=st.integers(1, 20000), side=st.integers(8, 4096),
)
def test_scaled_sizes_cap_the_long_side_and_keep_the_aspect(w: int, h: int, side: int) -> None:
    sw, sh = (int(x[0]) for x in scaled_sizes(np.array([w]), np.array([h]), side))
    assert sw >= 1 and sh >= 1 and max(sw, sh) <= max(side, 1)
    if max(w, h) <= side:
        assert (sw, sh) == (w, h)
    else:
        s = side / max(w, h)
        assert abs(sw - w * s) <= 0.5 + 1e-9 or sw == 1
        assert abs(sh - h * s) <= 0.5 + 1e-9 or sh == 1
        assert max(sw, sh) == side


def test_bad_inputs_fail_with_one_clear_line(tmp_path: Path) -> None:
    kept, tags = make_kept(), make_tags()
    with pytest.raises(KxlError, match=r"character.* id 999 that is not in tags.parquet"):
        synth_shards(kept.with_columns(tags_character=pl.lit([999], pl.List(pl.Int64))), tags,
                     synth_cfg(), tmp_path)
    with pytest.raises(KxlError, match=r"file_ext 'gif'"):
        synth_shards(kept.with_columns(file_ext=pl.lit("gif")), tags, synth_cfg(), tmp_path)
    with pytest.raises(KxlError, match=r"61 defects requested for 60"):
        synth_shards(kept, tags, synth_cfg(n_missing=61), tmp_path)
    with pytest.raises(KxlError, match=r"missing column 'tags_character'"):
        synth_shards(kept.drop("tags_character"), tags, synth_cfg(), tmp_path)


def features(img: np.ndarray) -> np.ndarray:
    """A 4x4x4 colour histogram of the centre crop (what a small CNN sees first)."""
    h, w, _ = img.shape
    c = img[h // 4 : h - h // 4 or h, w // 4 : w - w // 4 or w].reshape(-1, 3) // 64
    hist = np.bincount(c[:, 0] * 16 + c[:, 1] * 4 + c[:, 2], minlength=64).astype(float)
    return hist / hist.sum()


def test_same_character_images_are_closer_than_different_ones(tmp_path: Path) -> None:
    # Square-ish 300-post set at the tiny model's 64 px, 4 characters, then nearest centroid.
    kept = make_kept(300, seed=3).with_columns(width=pl.lit(900, pl.Int32),
                                               height=pl.lit(1000, pl.Int32))
    synth_shards(kept, make_tags(), synth_cfg(max_side=64), tmp_path)
    got = members(tmp_path)
    feats, labels = [], []
    for pid, ext, chars in zip(kept["id"], kept["file_ext"], kept["tags_character"], strict=True):
        if not chars.len():
            continue
        with Image.open(io.BytesIO(got[f"{pid}.{ext}"][1])) as im:
            feats.append(features(np.asarray(im.convert("RGB"))))
        labels.append(chars[0])
    x, y = np.array(feats), np.array(labels)
    d = np.abs(x[:, None] - x[None]).sum(-1)
    same = y[:, None] == y[None]
    off_diag = ~np.eye(len(y), dtype=bool)
    assert d[same & off_diag].mean() < 0.5 * d[~same].mean()
    centroids = {c: x[y == c].mean(0) for c in np.unique(y)}
    pred = [min(centroids, key=lambda c: np.abs(f - centroids[c]).sum()) for f in x]
    assert np.mean(np.array(pred) == y) >= 0.95
    assert len(centroids) == len(CHARACTERS)
