"""Synthetic `posttagrelation` rows for a chunk of posts: ~30 tags per post of all five types.

Returns (post position in chunk, vocab index) pairs in insertion order. Within a post the
order is shuffled across types, as danbooru's is mixed, so the captioner's "order within a
type follows insertion order" rule is a real property.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from kxl.metadata.vocab import (
    CHARACTERS_PER_POST,
    HEAD_CHARACTERS,
    META_RANDOM,
    Vocab,
    zipf_draw,
)

GENERAL_MEAN = 26.0  # plus ~1.5 people, ~1 character, ~1 series, ~1 artist, ~2 meta: ~30
ARTISTS_PER_POST = ((0, 1, 2), (0.07, 0.89, 0.04))


def _draw_per_post(
    rng: np.random.Generator, counts: np.ndarray, ranked: np.ndarray, s: float, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """`counts[i]` Zipf(s, q) draws from `ranked` for each post i: (post positions, vocab idx)."""
    pos = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return pos, ranked[zipf_draw(rng, len(ranked), s, len(pos), q)]


def _people(rng: np.random.Generator, vocab: Vocab, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = vocab.people_weight / vocab.people_weight.sum()
    rows = vocab.people[rng.choice(len(p), n, p=p)]
    pos, col = np.nonzero(rows >= 0)
    return pos.astype(np.int64), rows[pos, col]


def _characters(
    rng: np.random.Generator, vocab: Vocab, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Characters (a popular head, then Zipf 0.75, so even a 4000-post DB has a long tail) and
    their series; posts without a character get a series (mostly "original") half the time."""
    k = rng.choice(CHARACTERS_PER_POST[0], n, p=CHARACTERS_PER_POST[1])
    pos = np.repeat(np.arange(n, dtype=np.int64), k)
    rank = zipf_draw(rng, len(vocab.character), 0.75, len(pos), head=HEAD_CHARACTERS,
                     head_share=vocab.character_head_share)
    lone = np.flatnonzero((k == 0) & (rng.random(n) < 0.5))
    crossover = np.flatnonzero((k > 0) & (rng.random(n) < 0.05))
    extra_pos = np.concatenate([lone, crossover])
    extra = vocab.copyright[zipf_draw(rng, len(vocab.copyright), 1.0, len(extra_pos))]
    series_pos = np.concatenate([pos, extra_pos])
    series = np.concatenate([vocab.series[rank], extra])
    return pos, vocab.character[rank], series_pos, series


def _meta(
    rng: np.random.Generator, vocab: Vocab, posts: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Size/file-type meta tags as danbooru derives them, plus independent random ones."""
    w, h = posts["image_width"].to_numpy(), posts["image_height"].to_numpy()
    ext = posts["file_ext"].to_numpy()
    moving = np.isin(ext, ["mp4", "webm"])
    sound = moving & (rng.random(len(ext)) < 0.5)
    derived = {
        "highres": (w >= 1600) | (h >= 1200), "absurdres": (w >= 3200) | (h >= 2400),
        "incredibly_absurdres": (w >= 10_000) | (h >= 10_000),
        "lowres": (w <= 500) & (h <= 500), "animated": np.isin(ext, ["gif", "mp4", "webm", "zip"]),
        "video": moving, "sound": sound, "has_audio": sound & (rng.random(len(ext)) < 0.3),
    }
    rand = rng.random((len(ext), len(META_RANDOM))) < np.array([p for _, p in META_RANDOM])
    names = list(derived) + [m for m, _ in META_RANDOM]
    mask = np.column_stack([*derived.values(), rand])
    pos, col = np.nonzero(mask)
    return pos.astype(np.int64), np.array([vocab.meta[m] for m in names])[col]


def relation_rows(
    rng: np.random.Generator, vocab: Vocab, posts: pl.DataFrame, force: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(post position, vocab index) for every relation of the chunk, in insertion order.

    `force` adds each hand-picked tag (vocab.forced) to one post so that every captioner
    rule is exercised by any DB; the first chunk does it.
    """
    n = posts.height
    k_general = rng.negative_binomial(6, 6 / (6 + GENERAL_MEAN), n)
    parts = [_people(rng, vocab, n), _draw_per_post(rng, k_general, vocab.general, 1.0, 10.0)]
    c_pos, chars, s_pos, series = _characters(rng, vocab, n)
    parts += [(c_pos, chars), (s_pos, series), _meta(rng, vocab, posts)]
    k_artist = rng.choice(ARTISTS_PER_POST[0], n, p=ARTISTS_PER_POST[1])
    parts.append(_draw_per_post(rng, k_artist, vocab.artist, 1.0, 50.0))
    if force:
        parts.append(((np.arange(len(vocab.forced)) * 37 + 11) % n, vocab.forced))
    pos = np.concatenate([p for p, _ in parts])
    tag = np.concatenate([t for _, t in parts])
    # One relation per (post, tag): duplicates from with-replacement draws are dropped here,
    # before anything is written, so the DB itself never holds a duplicate pair.
    key = np.sort(pos * vocab.size + tag)
    key = key[np.concatenate([[True], np.diff(key) != 0])] if len(key) else key
    pos, tag = key // vocab.size, key % vocab.size
    # shuffle within each post: sort by (post, random 32 bits) packed into one int64 key
    order = np.argsort((pos << 32) | rng.integers(0, 1 << 32, len(key)), kind="stable")
    return pos[order], tag[order]
