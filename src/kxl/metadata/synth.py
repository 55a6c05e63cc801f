"""`kxl synth-metadata`: a deterministic synthetic danbooru2023 DB in the HakuBooru schema.

Rows are generated and inserted chunk by chunk (bounded memory at 7.35M posts / 220M
relations), with `executemany` straight from numpy/polars columns; indexes are built after
the inserts, which is much faster than maintaining them row by row. Each chunk draws from
its own generator seeded by (seed, stream, chunk), so no state leaks between chunks.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import polars as pl

from kxl.atomic import atomic_path
from kxl.errors import KxlError
from kxl.metadata.config import FULL_SCALE, SyntheticConfig
from kxl.metadata.schema import INDEXES, POST_COLUMNS, TABLES
from kxl.metadata.synth_posts import post_rows, sample_ids
from kxl.metadata.synth_tags import relation_rows
from kxl.metadata.vocab import Vocab, build_vocab

CHUNK_POSTS = 1 << 18
MIN_POSTS = 100  # enough posts for every special tag, oddity and quality level to appear
# Random streams: one generator per purpose (and per chunk), derived from the config seed.
_IDS, _VOCAB, _POSTS, _TAGS = range(4)
# No journal, no syncs: the file is private until the atomic rename. The page cache stays at
# SQLite's default 2 MB on purpose: CREATE INDEX sorts 3-4x faster (CPU) with it than with
# 256 MB-1 GB (measured on 6M relations), and the inserts only ever append.
_PRAGMAS = ("PRAGMA journal_mode=OFF", "PRAGMA synchronous=OFF", "PRAGMA locking_mode=EXCLUSIVE",
            "PRAGMA temp_store=FILE")


def _rng(seed: int, stream: int, chunk: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, chunk])


def check_config(cfg: SyntheticConfig) -> None:
    if cfg.n_posts < MIN_POSTS:
        raise KxlError(f"metadata.synthetic.n_posts={cfg.n_posts}: need at least {MIN_POSTS}")
    if cfg.n_posts > cfg.max_id:
        raise KxlError(
            f"metadata.synthetic.n_posts={cfg.n_posts} exceeds max_id={cfg.max_id} "
            "(ids are distinct and start at 1); lower n_posts or raise max_id"
        )


def _with_oddities(posts: pl.DataFrame, first: bool, last: bool) -> pl.DataFrame:
    """Years outside 2005-2024 (the captioner's year-tag edge): the oldest post says 2004,
    the newest 2025."""
    row = pl.int_range(pl.len())
    expr = pl.col("created_at")
    if first:
        expr = pl.when(row == 0).then(pl.lit("2004-12-31T23:59:59.000-05:00")).otherwise(expr)
    if last:
        newest = pl.lit("2025-01-01T00:00:01.000-05:00")
        expr = pl.when(row == pl.len() - 1).then(newest).otherwise(expr)
    return posts.with_columns(expr.alias("created_at"))


def _insert_chunk(
    con: sqlite3.Connection, vocab: Vocab, cfg: SyntheticConfig, ids: np.ndarray, chunk: int
) -> np.ndarray:
    """Insert one chunk's posts and relations; return the chunk's tag counts per vocab index."""
    n_chunks = -(-cfg.n_posts // CHUNK_POSTS)
    posts = post_rows(_rng(cfg.seed, _POSTS, chunk), ids, cfg.max_id)
    posts = _with_oddities(posts, first=chunk == 0, last=chunk == n_chunks - 1)
    marks = ",".join("?" * len(POST_COLUMNS))
    con.executemany(f'INSERT INTO "post" VALUES ({marks})', posts.iter_rows())
    pos, tag = relation_rows(_rng(cfg.seed, _TAGS, chunk), vocab, posts, force=chunk == 0)
    if chunk == 0:  # one post without any tag (the middle of the first chunk)
        keep = pos != len(ids) // 2
        pos, tag = pos[keep], tag[keep]
    con.executemany(
        'INSERT INTO "posttagrelation" ("post_id", "tag_id") VALUES (?, ?)',
        zip(ids[pos].tolist(), vocab.tag_id[tag].tolist(), strict=True),
    )
    return np.bincount(tag, minlength=vocab.size)


def _insert_tags(con: sqlite3.Connection, vocab: Vocab, popularity: np.ndarray) -> None:
    order = np.argsort(vocab.tag_id)
    rows = zip(vocab.tag_id[order].tolist(), vocab.name[order].tolist(),
               vocab.type[order].tolist(), popularity[order].tolist(), strict=True)
    con.executemany('INSERT INTO "tag" VALUES (?, ?, ?, ?)', rows)


def synthesize(out: str | os.PathLike[str], cfg: SyntheticConfig) -> Path:
    """Write the synthetic DB for `cfg` to `out` (atomically); same cfg, same bytes."""
    check_config(cfg)
    ids = sample_ids(_rng(cfg.seed, _IDS), cfg.n_posts, cfg.max_id)
    vocab = build_vocab(_rng(cfg.seed, _VOCAB), cfg.n_posts)
    with atomic_path(out) as tmp:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            for pragma in _PRAGMAS:
                con.execute(pragma)
            con.execute("BEGIN")
            for ddl in TABLES.values():
                con.execute(ddl)
            popularity = np.zeros(vocab.size, dtype=np.int64)
            for chunk, lo in enumerate(range(0, cfg.n_posts, CHUNK_POSTS)):
                popularity += _insert_chunk(con, vocab, cfg, ids[lo:lo + CHUNK_POSTS], chunk)
            _insert_tags(con, vocab, popularity)
            for ddl in INDEXES.values():
                con.execute(ddl)
            con.execute("COMMIT")
        finally:
            con.close()
    return Path(out)


def make_full_scale_db(out: str | os.PathLike[str], seed: int = 0) -> Path:
    """The full-scale synthetic DB (7,349,999 posts, ~220M relations) for benchmarks."""
    return synthesize(out, SyntheticConfig(seed=seed, n_posts=FULL_SCALE.n_posts,
                                           max_id=FULL_SCALE.max_id))
