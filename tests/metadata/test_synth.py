"""The default synthetic DB is deterministic and has every property later stages rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.metadata.config import SyntheticConfig
from kxl.metadata.export import export_metadata
from kxl.metadata.synth import synthesize
from kxl.metadata.synth_posts import sample_ids
from kxl.metadata.vocab import (
    HEAD_CHARACTERS,
    HEAD_SHARE_MAX,
    SPECIAL_TAGS,
    character_head_share,
    zipf_draw,
)

from .conftest import Exported, default_config

# HakuBooru 0.0.2 metainfo.fav_count_percentile_full, percentiles used by quality_tag_new.
FAV_P = {0: {10: 1, 30: 4, 45: 7, 60: 10, 75: 16, 90: 27},
         1: {10: 2, 30: 8, 45: 13, 60: 19, 75: 30, 90: 56},
         2: {10: 8, 30: 21, 45: 33, 60: 49, 75: 75, 90: 132},
         3: {10: 9, 30: 27, 45: 45, 60: 69, 75: 106, 90: 190}}


def tagged(db: Exported) -> pl.DataFrame:
    """post_tags joined with tag name and type."""
    return db.post_tags.join(db.tags.rename({"id": "tag_id"}), on="tag_id", how="left",
                               maintain_order="left")


def test_same_config_gives_byte_identical_db_and_tables(tmp_path: Path,
                                                        default_db: Exported) -> None:
    db = synthesize(tmp_path / "again.db", default_config())
    assert sha256_file(db) == sha256_file(default_db.db)
    export_metadata(db, tmp_path / "out")
    for name in ("posts.parquet", "tags.parquet", "post_tags.parquet"):
        assert sha256_file(tmp_path / "out" / name) == sha256_file(default_db.out / name), name


def test_another_seed_gives_another_db(tmp_path: Path, small_db_template: Path) -> None:
    other = synthesize(tmp_path / "o.db", SyntheticConfig(seed=4, n_posts=300, max_id=100_000))
    assert sha256_file(other) != sha256_file(small_db_template)


def test_cli_writes_db_and_provenance(tmp_path: Path) -> None:
    out = tmp_path / "m" / "danbooru2023.db"
    proc = subprocess.run(
        [sys.executable, "-m", "kxl", "synth-metadata", "--out", str(out), "--config-json",
         '{"seed": 1, "n_posts": 150, "max_id": 20000}'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (out.parent / ".prov" / "danbooru2023.db.json").is_file()
    assert not [p for p in out.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("cfg, match", [
    ({"seed": 0, "n_posts": 5000, "max_id": 4000}, "exceeds max_id"),
    ({"seed": 0, "n_posts": 10, "max_id": 4000}, "at least"),
])
def test_impossible_configs_are_refused(tmp_path: Path, cfg: dict, match: str) -> None:
    with pytest.raises(KxlError, match=match):
        synthesize(tmp_path / "x.db", SyntheticConfig(**cfg))
    assert not (tmp_path / "x.db").exists()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), max_id=st.integers(1, 5000), frac=st.floats(0, 1))
def test_sampled_ids_are_sorted_distinct_and_in_range(seed: int, max_id: int, frac: float) -> None:
    n = int(frac * max_id)
    ids = sample_ids(np.random.default_rng(seed), n, max_id)
    assert len(ids) == n and (np.diff(ids) > 0).all()
    assert n == 0 or (ids[0] >= 1 and ids[-1] <= max_id)


def test_ids_are_sparse_and_denser_at_high_ids(default_db: Exported) -> None:
    ids = default_db.posts["id"].to_numpy()
    assert len(ids) == 4000 and ids.max() <= 7_349_999 and (np.diff(ids) > 0).all()
    low, high = (ids < 2_450_000).sum(), (ids >= 4_900_000).sum()
    assert high > 1.6 * low > 0


def test_post_flags_and_files(default_db: Exported) -> None:
    p = default_db.posts
    assert 0.02 < p["is_deleted"].mean() < 0.08
    assert 0 < p["is_banned"].sum() < 0.02 * p.height
    gold = p.filter(pl.col("md5").is_null())
    assert 0.005 * p.height < gold.height < 0.03 * p.height
    assert gold["file_url"].is_null().all()
    banned = p.filter(pl.col("is_banned") & pl.col("md5").is_not_null())
    assert banned.height and banned["file_url"].is_null().all()  # hidden file, md5 kept
    assert set(p["file_ext"]) == {"jpg", "jpeg", "png", "webp", "gif", "mp4", "webm", "zip", "swf"}
    assert set(p["rating"]) == {0, 1, 2, 3}
    assert p.filter(pl.col("md5").is_not_null())["md5"].str.contains("^[0-9a-f]{32}$").all()


def test_image_sizes_span_extremes(default_db: Exported) -> None:
    p = default_db.posts
    w, h = p["image_width"].to_numpy(), p["image_height"].to_numpy()
    aspect = w / h
    assert aspect.min() <= 1 / 7 and aspect.max() >= 7
    assert (np.maximum(w, h) < 256).sum() >= 5 and (np.maximum(w, h) > 8000).sum() >= 3
    assert len(np.unique(np.round(aspect, 2))) > 100


def test_created_at_format_years_and_order(default_db: Exported) -> None:
    c = default_db.posts["created_at"]
    assert c.str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}-0[45]:00$").all()
    years = c.str.slice(0, 4).cast(pl.Int32)
    assert set(range(2005, 2025)) <= set(years)
    assert set(years) - set(range(2005, 2025)) == {2004, 2025}  # the year-tag edge cases
    # dates rise with id (apart from the two edge posts at the very ends)
    t = c.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S").dt.epoch("s").to_numpy()[1:-1]
    assert np.corrcoef(np.argsort(np.argsort(t)), np.arange(len(t)))[0, 1] > 0.99


def test_fav_counts_yield_every_quality_tag(default_db: Exported) -> None:
    """HakuBooru quality_tag_new thresholds (strict >) give all seven levels per rating."""
    p = default_db.posts.filter(pl.col("id") <= 7_100_000)
    for r, pct in FAV_P.items():
        fav = p.filter(pl.col("rating") == r)["fav_count"].to_numpy()
        level = np.searchsorted(np.array(list(pct.values())), fav, side="left")
        assert set(level) == set(range(7)), r
        assert 0.05 < (fav > pct[90]).mean() < 0.15  # the table's own percentile


def test_tag_types_counts_and_zipf(default_db: Exported) -> None:
    t, pt = default_db.tags, default_db.post_tags
    assert set(t["type"]) == {0, 1, 2, 3, 4}
    per_post = pt.group_by("post_id").len()["len"]
    assert 27 < per_post.mean() < 34
    counts = pt.group_by("tag_id").len().join(t.rename({"id": "tag_id"}), on="tag_id")
    general = counts.filter(pl.col("type") == 0)["len"]
    assert general.max() > 30 * general.median()
    # popularity is the tag's real post count
    pop = counts.select((pl.col("len") == pl.col("popularity")).all()).item()
    assert pop


def test_special_and_odd_tags_all_occur(default_db: Exported) -> None:
    names = set(tagged(default_db)["name"])
    assert set(SPECIAL_TAGS) <= names
    for name in (":d", "^_^", "o_o", ":3", "^_^;", "hatsune_miku_(append)", " ",
                 "banned_artist", "commentary_request", "translated", "highres", "absurdres",
                 "bad_id", "video", "revision", "md5_mismatch", "photoshop_(medium)",
                 "watercolor_(medium)"):
        assert name in names, name
    types = dict(zip(default_db.tags["name"], default_db.tags["type"], strict=True))
    assert types["banned_artist"] == 1 and types["photoshop_(medium)"] == 4
    assert types["watercolor_(medium)"] == 0 and types["hatsune_miku_(append)"] == 2


def test_characters_have_a_popular_head_and_a_long_tail(default_db: Exported) -> None:
    """The HEAD_CHARACTERS most popular characters share 80% of the character draws (~13% each
    of ~3,600, so ~480 posts: Epsilon's eval characters have >= 500); the rest is a Zipf tail
    of many rare ones. Each character always comes with its own series."""
    assert default_db.posts.height == 4000 and character_head_share(4000) == HEAD_SHARE_MAX
    tg = tagged(default_db)
    chars = tg.filter(pl.col("type") == 2).group_by("name").agg(pl.col("post_id"))
    chars = chars.with_columns(pl.col("post_id").list.len().alias("n")).sort("n", descending=True)
    n = chars["n"].to_numpy()
    head = n[:HEAD_CHARACTERS]
    assert head.min() > 0.6 * head.max() and head.min() >= 300, n[:10]  # flat, popular head
    assert n[HEAD_CHARACTERS] < 0.1 * head.min(), n[:10]  # then a cliff
    assert len(n) >= 100 and (n[HEAD_CHARACTERS:] >= 8).sum() >= 5, n[:30]  # and a tail
    series = tg.filter(pl.col("type") == 3).select("post_id", series="name")
    for row in chars.head(15).iter_rows(named=True):  # head and the tail's top
        s = series.filter(pl.col("post_id").is_in(row["post_id"]))["series"].value_counts()
        assert s["count"].max() >= row["n"], row["name"]  # one series on every such post


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), head=st.integers(0, 8), share=st.floats(0.0, 1.0))
def test_zipf_draw_head_mixture_uses_one_uniform_per_draw(seed: int, head: int, share: float):
    """The head mixture changes the ranks, never how much of the generator a draw consumes
    (so every later table of the synthetic DB stays put), and ranks stay in range."""
    a, b = np.random.default_rng(seed), np.random.default_rng(seed)
    plain = zipf_draw(a, 50, 0.75, 200)
    mixed = zipf_draw(b, 50, 0.75, 200, head=head, head_share=share)
    assert a.random() == b.random()
    assert mixed.min() >= 0 and mixed.max() < 50
    if head == 0 or share == 0.0:
        assert (plain == mixed).all()


def test_head_share_gives_the_head_a_fixed_post_count_in_large_dbs() -> None:
    # 6 x 500 posts of ~0.9 character draws per post: danbooru-sized DBs keep their Zipf ranks
    assert character_head_share(7_350_000) == pytest.approx(6 * 500 / (0.9 * 7_350_000))
    assert character_head_share(100) == HEAD_SHARE_MAX


def test_zipf_draw_head_share_matches_its_formula() -> None:
    n, s, head, share, size = 40, 0.75, 6, 0.8, 400_000
    ranks = zipf_draw(np.random.default_rng(0), n, s, size, head=head, head_share=share)
    zipf = np.arange(1, n + 1, dtype=np.float64) ** -s
    want = (1 - share) * zipf / zipf.sum()
    want[:head] += share / head
    got = np.bincount(ranks, minlength=n) / size
    assert np.abs(got - want).max() < 4 * np.sqrt(want.max() / size)


def test_insertion_order_mixes_types_and_one_post_has_no_tags(default_db: Exported) -> None:
    tg = tagged(default_db)
    runs = tg.group_by("post_id", maintain_order=True).agg(
        (pl.col("type").diff().fill_null(0) != 0).sum().alias("switches"),
        pl.col("type").n_unique().alias("kinds"))
    assert (runs["switches"] > runs["kinds"]).mean() > 0.8
    untagged = set(default_db.posts["id"]) - set(default_db.post_tags["post_id"])
    assert len(untagged) == 1
