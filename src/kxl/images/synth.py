"""`kxl synth-images`: deterministic danbooru2023-style tar shards for the default run.

Layout as KBlueLeaf/danbooru2023-webp-4Mpixel: `data-XXXX.tar` with XXXX = id % 1000, each
holding `{id}.{ext}` members at top level (ext from the manifest, encoded accordingly).
Sizes are the DB's width/height scaled so the long side is at most `max_side`, keeping the
aspect ratio (as the 4Mpixel set scales to <= 4 MP); what is drawn is in `kxl.images.render`.
A configured number of posts, chosen by a generator seeded from the synthetic seed, get a
defect: left out of every shard, truncated to half their bytes, zero bytes, or a PNG header
claiming 100000 x 100000 pixels. Tar members have fixed mtime/uid/gid/owner names so that the
same inputs and seed give byte-identical shards.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from kxl.errors import KxlError
from kxl.images import render
from kxl.images.config import SyntheticImages
from kxl.images.pool import map_shards
from kxl.tables import require_columns

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
KEPT_COLUMNS = {
    "id": pl.Int64, "file_ext": pl.String, "width": pl.Int32, "height": pl.Int32,
    "rating": pl.Int8, "tags_character": pl.List(pl.Int64), "tags_copyright": pl.List(pl.Int64),
}
KEPT_ID = {"id": pl.Int64}
TAGS_COLUMNS = {"id": pl.Int64, "name": pl.String}
DEFECTS = ("missing", "truncated", "zero_byte", "oversized")
_DEFECT_STREAM = 0x5D  # separates the defect draw from the per-post streams
BOMB_SIDE = 100_000


def scaled_sizes(width: np.ndarray, height: np.ndarray, max_side: int) -> tuple[np.ndarray, ...]:
    """(w, h) scaled down so that max(w, h) <= max_side, aspect kept; never below 1 px."""
    w, h = width.astype(np.float64), height.astype(np.float64)
    s = np.minimum(1.0, max_side / np.maximum(w, h))
    return (
        np.maximum(np.rint(w * s), 1).astype(np.int64),
        np.maximum(np.rint(h * s), 1).astype(np.int64),
    )


def first_tag_hash(kept: pl.DataFrame, tags: pl.DataFrame, column: str) -> pl.DataFrame:
    """Per post (kept order): the name hash of its first `column` tag, null when none."""
    first = kept.select("id", pl.col(column).list.first().alias("tag_id"))
    named = first.join(
        tags.rename({"id": "tag_id"}), on="tag_id", how="left", maintain_order="left"
    )
    unknown = named.filter(pl.col("tag_id").is_not_null() & pl.col("name").is_null())
    if unknown.height:
        row = unknown.row(0, named=True)
        raise KxlError(
            f"kept.parquet: post {row['id']} has {column} id {row['tag_id']} that is not in "
            "tags.parquet; rebuild the manifest and metadata from the same DB"
        )
    names = named["name"].drop_nulls().unique().sort()
    lut = pl.DataFrame({"name": names, "hash": pl.Series(render.name_hashes(names.to_list()))})
    return named.join(lut, on="name", how="left", maintain_order="left").select("id", "hash")


def choose_defects(ids: np.ndarray, cfg: SyntheticImages) -> dict[str, np.ndarray]:
    """Disjoint sets of post ids per defect, drawn without replacement from the sorted ids."""
    counts = [cfg.n_missing, cfg.n_truncated, cfg.n_zero_byte, cfg.n_oversized]
    if sum(counts) > len(ids):
        raise KxlError(
            f"images.synthetic: {sum(counts)} defects requested for {len(ids)} kept posts; "
            "lower n_missing/n_truncated/n_zero_byte/n_oversized"
        )
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _DEFECT_STREAM]))
    order = np.sort(ids)[rng.permutation(len(ids))]
    bounds = np.cumsum([0, *counts])
    return {d: order[bounds[k] : bounds[k + 1]] for k, d in enumerate(DEFECTS)}


def encode(planes: np.ndarray, ext: str) -> bytes:
    """Encode planar RGB uint8 [3, h, w] in the format named by the extension (fixed settings)."""
    buf = io.BytesIO()
    img = Image.merge("RGB", [Image.fromarray(c) for c in planes])
    if ext == "png":
        img.save(buf, format="PNG", compress_level=1)
    elif ext in ("jpg", "jpeg"):
        img.save(buf, format="JPEG", quality=90)
    else:
        img.save(buf, format="WEBP", quality=90, method=0)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A small valid-looking PNG whose header claims side x side RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a regular file with fixed metadata (mtime 0, root:root numeric, no names)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def post_table(kept: pl.DataFrame, tags: pl.DataFrame, cfg: SyntheticImages) -> pl.DataFrame:
    """Everything needed to draw each kept post, sorted by id (one vectorised pass)."""
    bad_ext = kept.filter(~pl.col("file_ext").is_in(IMAGE_EXTS))
    if bad_ext.height:
        r = bad_ext.row(0, named=True)
        raise KxlError(f"kept.parquet: post {r['id']} has file_ext {r['file_ext']!r}, not one "
                       f"of {IMAGE_EXTS}; the manifest should have dropped it as not_image")
    bad_size = kept.filter((pl.col("width") <= 0) | (pl.col("height") <= 0)
                           | pl.col("width").is_null() | pl.col("height").is_null())
    if bad_size.height:
        r = bad_size.row(0, named=True)
        raise KxlError(f"kept.parquet: post {r['id']} has size {r['width']}x{r['height']}; "
                       "image sizes must be positive")
    bad_rating = kept.filter(~pl.col("rating").is_between(0, 3) | pl.col("rating").is_null())
    if bad_rating.height:
        r = bad_rating.row(0, named=True)
        raise KxlError(f"kept.parquet: post {r['id']} has rating {r['rating']}, expected 0..3")
    kept = kept.sort("id")
    w, h = scaled_sizes(kept["width"].to_numpy(), kept["height"].to_numpy(), cfg.max_side)
    char = first_tag_hash(kept, tags, "tags_character")["hash"]
    series = first_tag_hash(kept, tags, "tags_copyright")["hash"]
    return kept.select("id", "file_ext", "rating").with_columns(
        w=pl.Series(w), h=pl.Series(h), shard=(pl.col("id") % 1000).cast(pl.Int32),
        char_hash=char, series_hash=series,
    )


@dataclass(frozen=True)
class ShardJob:
    """One synthetic shard: its posts (rows of `post_table`), the seed and the tar to write."""

    posts: pl.DataFrame
    seed: int
    path: Path


def synth_shards(
    kept: pl.DataFrame, tags: pl.DataFrame, cfg: SyntheticImages, out_dir: Path, workers: int = 1
) -> int:
    """Write `out_dir/data-XXXX.tar` for each shard holding a kept post; returns member count."""
    kept = require_columns(kept, KEPT_COLUMNS, "kept.parquet")
    tags = require_columns(tags, TAGS_COLUMNS, "tags.parquet")
    posts = post_table(kept, tags, cfg)
    defects = choose_defects(posts["id"].to_numpy(), cfg)
    kind = pl.DataFrame(
        {"id": np.concatenate(list(defects.values())),
         "defect": np.repeat(list(defects), [len(v) for v in defects.values()])},
        schema={"id": pl.Int64, "defect": pl.String},
    )
    posts = posts.join(kind, on="id", how="left", maintain_order="left")
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        ShardJob(part, cfg.seed, out_dir / f"data-{shard:04d}.tar")
        for (shard,), part in posts.partition_by("shard", as_dict=True, maintain_order=True).items()
    ]
    return sum(map_shards(write_shard, jobs, workers, "synth"))


def write_shard(job: ShardJob) -> int:
    """Draw, encode and tar one shard's posts in id order (runs in a worker process)."""
    p = job.posts
    ident = render.identities(
        p["char_hash"].fill_null(0).to_numpy(), p["char_hash"].is_not_null().to_numpy()
    )
    series_rgb = render.series_colours(
        p["series_hash"].fill_null(0).to_numpy(), p["series_hash"].is_not_null().to_numpy()
    )
    ids, exts, defects = p["id"].to_list(), p["file_ext"].to_list(), p["defect"].to_list()
    w, h, rating = p["w"].to_list(), p["h"].to_list(), p["rating"].to_list()
    written = 0
    with tarfile.open(job.path, "w", format=tarfile.GNU_FORMAT) as tar:
        for i, pid in enumerate(ids):  # one draw + encode per image is the unit of work
            if defects[i] == "missing":
                continue
            if defects[i] == "zero_byte":
                data = b""
            elif defects[i] == "oversized":
                data = bomb_png()
            else:
                rng = np.random.default_rng(np.random.SeedSequence([job.seed, pid]))
                planes = render.render(w[i], h[i], ident, i, series_rgb[i], rating[i], rng)
                data = encode(planes, exts[i])
                data = data[: len(data) // 2] if defects[i] == "truncated" else data
            tar_member(tar, f"{pid}.{exts[i]}", data)
            written += 1
    return written
