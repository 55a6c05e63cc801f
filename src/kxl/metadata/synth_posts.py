"""Synthetic `post` rows: ids, dates, files, sizes, ratings and fav counts like danbooru's.

Every function is vectorised over a chunk of posts and draws only from the generator it is
given, so a chunk's rows depend on (seed, chunk) alone.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from kxl.metadata.schema import POST_COLUMNS

# HakuBooru metainfo.fav_count_percentile_full: per rating, fav_count at percentiles 5..95.
# Used as the inverse CDF of fav_count so the captioner's quality table yields every tag.
FAV_PERCENTILES = {
    0: (1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 22, 27, 37),
    1: (1, 2, 4, 5, 6, 8, 9, 11, 13, 15, 17, 19, 22, 26, 30, 36, 44, 56, 81),
    2: (4, 8, 11, 14, 18, 21, 25, 29, 33, 38, 43, 49, 56, 65, 75, 88, 105, 132, 182),
    3: (4, 9, 13, 18, 22, 27, 33, 39, 45, 52, 60, 69, 79, 92, 106, 125, 151, 190, 262),
}
RATING_P = (0.38, 0.32, 0.12, 0.18)  # general, sensitive, questionable, explicit
EXT_P = {"jpg": 0.72, "png": 0.195, "webp": 0.004, "jpeg": 0.002, "gif": 0.02, "mp4": 0.03,
         "webm": 0.012, "zip": 0.012, "swf": 0.005}
# (post id, UTC date) on danbooru2023 (last id 7,349,999), scaled to max_id: its growth.
DATE_ANCHORS = (
    (0.0, "2005-05-24"), (1_000_000, "2011-09-01"), (2_000_000, "2015-06-01"),
    (3_000_000, "2018-02-01"), (4_000_000, "2020-08-01"), (5_000_000, "2021-12-15"),
    (6_000_000, "2023-02-01"), (7_000_000, "2024-01-01"), (7_349_999, "2024-03-19"),
)
_REF_MAX_ID = 7_349_999
CDN = "https://cdn.donmai.us"


def sample_ids(rng: np.random.Generator, n_posts: int, max_id: int) -> np.ndarray:
    """Sorted distinct ids in [1, max_id], denser at high ids (fewer old posts survive).

    Weighted sampling without replacement (exponential race): each id gets the key
    log(U) / w(id); the n largest keys win. With n == max_id every id is taken.
    """
    ids = np.arange(1, max_id + 1, dtype=np.int64)
    weight = 0.25 + 0.75 * ids / max_id
    keys = np.log(rng.random(max_id)) / weight
    if n_posts >= max_id:
        return ids
    if n_posts <= 0:
        return ids[:0]
    return np.sort(ids[np.argpartition(keys, max_id - n_posts)[max_id - n_posts:]])


def created_at(rng: np.random.Generator, ids: np.ndarray, max_id: int) -> pl.Series:
    """Danbooru's timestamp format, e.g. "2012-03-04T05:06:07.123-05:00", rising with id."""
    anchor_ids = np.array([a for a, _ in DATE_ANCHORS], dtype=np.float64) * max_id / _REF_MAX_ID
    anchor_ts = np.array([dt.datetime.fromisoformat(d).replace(tzinfo=dt.UTC).timestamp()
                          for _, d in DATE_ANCHORS])
    utc = np.interp(ids, anchor_ids, anchor_ts) + rng.uniform(-3 * 3600, 3 * 3600, len(ids))
    month = pl.Series(utc.astype(np.int64)).cast(pl.Datetime("ms")).dt.month().to_numpy()
    offset = np.where((month >= 4) & (month <= 10), -4, -5)  # US Eastern, DST approximated
    local_ms = (utc.astype(np.int64) + offset * 3600) * 1000 + rng.integers(0, 1000, len(ids))
    text = pl.Series(local_ms).cast(pl.Datetime("ms")).dt.strftime("%Y-%m-%dT%H:%M:%S%.3f")
    return text + pl.Series(np.where(offset == -4, "-04:00", "-05:00"))


def fav_counts(rng: np.random.Generator, rating: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw through HakuBooru's percentile table, Pareto (Zipf-like) above p95."""
    u = rng.random(len(rating))
    q = np.arange(0.0, 0.951, 0.05)
    out = np.zeros(len(rating), dtype=np.int64)
    for r, pct in FAV_PERCENTILES.items():  # four ratings
        sel = rating == r
        body = np.floor(np.interp(u[sel], q, (0, *pct)))
        tail = pct[-1] * (0.05 / np.maximum(1.0 - u[sel], 1e-9)) ** (1 / 1.3)
        out[sel] = np.where(u[sel] < 0.95, body, np.minimum(tail, 250_000)).astype(np.int64)
    return out


def image_sizes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(width, height): common aspect ratios, a log-normal spread, extremes to 1:8 and 8:1,
    tiny (<256 px) and huge (>8000 px) images."""
    common = np.array([0.5625, 0.6667, 0.7071, 0.75, 0.8, 1.0, 1.3333, 1.4142, 1.5, 1.7778, 2.0])
    kind = rng.choice(4, size=n, p=(0.65, 0.337, 0.008, 0.005))
    aspect = np.select(
        [kind == 0, kind == 1, kind == 2],
        [common[rng.integers(0, len(common), n)], np.exp(rng.normal(np.log(0.85), 0.35, n)),
         np.exp(rng.uniform(np.log(4.0), np.log(8.5), n)) ** rng.choice([-1, 1], n)],
        default=1.0,
    )
    long_side = np.exp(rng.normal(np.log(1500), 0.5, n)).clip(64, 12_000)
    tiny = rng.random(n) < 0.01
    huge = rng.random(n) < 0.005
    long_side = np.where(tiny, rng.uniform(24, 250, n), long_side)
    long_side = np.where(huge, rng.uniform(8_000, 20_000, n), long_side)
    w = np.where(aspect >= 1, long_side, long_side * aspect)
    h = np.where(aspect >= 1, long_side / aspect, long_side)
    return np.maximum(np.rint(w), 1).astype(np.int64), np.maximum(np.rint(h), 1).astype(np.int64)


def _md5_hex(rng: np.random.Generator, n: int) -> pl.Series:
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    ascii_ = digits[rng.integers(0, 16, size=(n, 32), dtype=np.uint8)]
    return pl.Series(np.ascontiguousarray(ascii_).view("S32").ravel()).cast(pl.String)


def _parents(rng: np.random.Generator, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """parent_id (0 = none) for ~8% of posts, always an earlier post of the same chunk."""
    n = len(ids)
    back = 1 + rng.geometric(0.3, n)
    has = (rng.random(n) < 0.08) & (np.arange(n) >= back)
    parent = np.where(has, ids[np.maximum(np.arange(n) - back, 0)], 0)
    return parent, np.isin(ids, parent[has])


def post_rows(rng: np.random.Generator, ids: np.ndarray, max_id: int) -> pl.DataFrame:
    """All `post` columns for sorted `ids`, in the table's column order."""
    n = len(ids)
    exts = np.array(list(EXT_P))
    ext = exts[rng.choice(len(exts), n, p=np.array(list(EXT_P.values())) / sum(EXT_P.values()))]
    w, h = image_sizes(rng, n)
    rating = rng.choice(4, n, p=RATING_P)
    fav = fav_counts(rng, rating)
    up = np.rint(fav * rng.uniform(0.5, 1.2, n)).astype(np.int64) + rng.poisson(1.0, n)
    down = -rng.poisson(0.4, n)
    old = 1.0 - ids / max_id
    deleted = rng.random(n) < 0.03 + 0.03 * old
    banned = rng.random(n) < 0.005
    gold = rng.random(n) < 0.015  # gold-account-only: no md5, no urls
    parent, has_children = _parents(rng, ids)
    pixiv = np.where(rng.random(n) < 0.45,
                     (ids / max_id * 117_000_000).astype(np.int64) + rng.integers(1, 99_999, n), 0)
    tweet = rng.random(n) < 0.35
    bpp = np.select([ext == "png", ext == "gif", np.isin(ext, ["mp4", "webm", "zip"]),
                     ext == "swf"], [1.6, 0.8, 3.0, 0.05], default=0.35)
    is_img = np.isin(ext, ["jpg", "jpeg", "png", "webp"])
    df = pl.DataFrame({
        "id": ids, "created_at": created_at(rng, ids, max_id),
        "uploader_id": np.minimum(rng.zipf(1.4, n), 999_999), "md5": _md5_hex(rng, n),
        "parent_id": parent, "has_children": has_children, "is_deleted": deleted,
        "is_banned": banned, "pixiv_id": pixiv, "bit_flags": (rng.random(n) < 0.01).astype(int),
        "has_large": is_img & (w > 850), "image_width": w, "image_height": h,
        "file_size": np.maximum(w * h * bpp * rng.lognormal(0, 0.3, n), 100).astype(np.int64),
        "file_ext": ext, "rating": rating, "score": up + down, "up_score": up,
        "down_score": down, "fav_count": fav, "gold": gold, "tweet": tweet,
        "tweet_id": rng.integers(10**17, 10**18, n),
    })
    return df.with_columns(_derived_columns()).select(POST_COLUMNS)


def _derived_columns() -> list[pl.Expr]:
    md5 = pl.col("md5")
    path = pl.concat_str(md5.str.slice(0, 2), pl.lit("/"), md5.str.slice(2, 2), pl.lit("/"))
    url = pl.concat_str(pl.lit(f"{CDN}/original/"), path, md5, pl.lit("."), pl.col("file_ext"))
    sample = pl.concat_str(pl.lit(f"{CDN}/sample/"), path, pl.lit("sample-"), md5, pl.lit(".jpg"))
    gold, hidden = pl.col("gold"), pl.col("gold") | pl.col("is_banned")
    return [
        pl.when(gold).then(None).otherwise(md5).alias("md5"),
        # banned posts keep their md5 but danbooru hides their files (url NULL)
        pl.when(hidden).then(None).otherwise(url).alias("file_url"),
        pl.when(hidden).then(None).when(pl.col("has_large")).then(sample).otherwise(url)
        .alias("large_file_url"),
        pl.when(hidden).then(None).otherwise(pl.concat_str(
            pl.lit(f"{CDN}/preview/"), path, md5, pl.lit(".jpg"))).alias("preview_file_url"),
        pl.when(pl.col("pixiv_id") > 0)
        .then(pl.format("https://www.pixiv.net/artworks/{}", pl.col("pixiv_id")))
        .when(pl.col("tweet"))
        .then(pl.format("https://twitter.com/i/status/{}", pl.col("tweet_id")))
        .otherwise(pl.lit("")).alias("source"),
        pl.when(pl.col("pixiv_id") > 0).then(pl.col("pixiv_id")).alias("pixiv_id"),
        pl.when(pl.col("parent_id") > 0).then(pl.col("parent_id")).alias("parent_id"),
        pl.col("has_children").alias("has_active_children"),
        pl.col("has_children").alias("has_visible_children"),
    ]
