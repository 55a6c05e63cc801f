"""The synthetic tag vocabulary: names, types, ids and per-type frequency ranks.

Names are built deterministically from syllables so they look like danbooru tags and are
unique by construction; a fixed head of real tags carries every case the Kohaku captioner
treats specially (HakuBooru `metainfo.py` special tags and meta blacklist, short emoticons,
parentheses, banned artists, a whitespace-only name).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kxl.errors import KxlError
from kxl.metadata.schema import ARTIST, CHARACTER, COPYRIGHT, GENERAL, META

# HakuBooru metainfo.special_tags: moved to the front of the caption by the captioner.
SPECIAL_TAGS = (
    "1girl", "2girls", "3girls", "4girls", "5girls", "6+girls", "multiple_girls",
    "1boy", "2boys", "3boys", "4boys", "5boys", "6+boys", "multiple_boys", "male_focus",
    "1other", "2others", "3others", "4others", "5others", "6+others", "multiple_others",
)
# Who is in the picture: (tags, weight). One combination per post, like danbooru's counts.
PEOPLE = (
    (("1girl", "solo"), 38.0), (("1girl",), 6.0), (("1boy", "solo", "male_focus"), 6.0),
    (("1girl", "1boy"), 9.0), (("1boy",), 2.0), (("2girls", "multiple_girls"), 7.0),
    (("3girls", "multiple_girls"), 2.0), (("4girls", "multiple_girls"), 0.8),
    (("5girls", "multiple_girls"), 0.4), (("6+girls", "multiple_girls"), 0.6),
    (("multiple_girls",), 0.3), (("2boys", "multiple_boys", "male_focus"), 1.5),
    (("3boys", "multiple_boys"), 0.5), (("4boys", "multiple_boys"), 0.2),
    (("5boys", "multiple_boys"), 0.1), (("6+boys", "multiple_boys"), 0.2),
    (("multiple_boys",), 0.1), (("2girls", "1boy", "multiple_girls"), 2.0),
    (("1other",), 1.5), (("2others", "multiple_others"), 0.3),
    (("3others", "multiple_others"), 0.1),
    (("4others", "multiple_others"), 0.05), (("5others", "multiple_others"), 0.05),
    (("6+others", "multiple_others"), 0.05), (("multiple_others",), 0.05), ((), 13.0),
)
# The most frequent general tags, in rank order (real danbooru names).
GENERAL_HEAD = (
    "long_hair", "looking_at_viewer", "blush", "smile", "short_hair", "open_mouth", "bangs",
    "blue_eyes", "simple_background", "shirt", "skirt", "brown_hair", "black_hair", "hat",
    "thighhighs", "white_background", "long_sleeves", "red_eyes", "gloves", "dress",
    "hair_ornament", "bow", "blonde_hair", "ribbon", "holding", "jewelry", "navel",
    "closed_mouth", "twintails", "no_humans",
)
# Cases the captioner's text rules must get right: short emoticons keep underscores (names of
# 3 chars or fewer), "^_^;" is 4 chars so it does not; parentheses are kept; a name that is
# only whitespace is skipped; "(medium)" only matters for meta tags.
GENERAL_ODD = (
    ":d", ":o", ":3", ";d", "^_^", "o_o", ">_<", "x_x", ":p", "=_=", "^_^;", "._.", "0_0",
    "bow_(weapon)", "star_(symbol)", "heart_(symbol)", "watercolor_(medium)",
    "traditional_media", " ",
)
# Meta tags: some kept by the captioner (highres, absurdres, ...), some dropped by its
# substring blacklist ("(medium)", commentary, bad, translat, request, mismatch, revision,
# audio, video). Derived ones are set from the post's size or file type, the rest at random.
META_DERIVED = ("highres", "absurdres", "incredibly_absurdres", "lowres", "animated", "video",
                "sound", "has_audio")
META_RANDOM = (
    ("commentary_request", 0.18), ("commentary", 0.06), ("english_commentary", 0.04),
    ("symbol-only_commentary", 0.01), ("translated", 0.05), ("translation_request", 0.02),
    ("check_translation", 0.01), ("partially_translated", 0.01), ("bad_id", 0.03),
    ("bad_pixiv_id", 0.03), ("bad_twitter_id", 0.01), ("revision", 0.005),
    ("md5_mismatch", 0.005), ("photoshop_(medium)", 0.02), ("clip_studio_paint_(medium)", 0.01),
    ("official_art", 0.03), ("scan", 0.01), ("game_cg", 0.01), ("tagme", 0.005),
    ("paid_reward_available", 0.01), ("non-web_source", 0.01), ("third-party_edit", 0.005),
    ("16:9", 0.005), ("spoilers", 0.005),
)
# Artists whose names contain "banned" (the captioner drops them).
ARTIST_HEAD = ("banned_artist", "kaibanned", "artist_(banned)")
COPYRIGHT_HEAD = (
    "original", "touhou", "vocaloid", "kantai_collection", "fate/grand_order", "idolmaster",
    "genshin_impact", "blue_archive", "hololive", "pokemon",
    "ore_no_imouto_ga_konna_ni_kawaii_wake_ga_nai",
)
CHARACTER_HEAD = (
    ("hakurei_reimu", "touhou"), ("kirisame_marisa", "touhou"), ("hatsune_miku", "vocaloid"),
    ("hatsune_miku_(append)", "vocaloid"), ("artoria_pendragon_(fate)", "fate/grand_order"),
    ("kousaka_kirino", "ore_no_imouto_ga_konna_ni_kawaii_wake_ga_nai"),
    ("admiral_(kancolle)", "kantai_collection"), ("pikachu", "pokemon"),
)

CHARACTERS_PER_POST = ((0, 1, 2, 3), (0.30, 0.55, 0.10, 0.05))
# The most popular characters: HEAD_CHARACTERS of them are drawn uniformly with a share of the
# character draws that gives each ~HEAD_POSTS posts (Epsilon's eval characters have >= 500), at
# most HEAD_SHARE_MAX; the rest are Zipf ranks over all. A 4000-post DB is then mostly these
# six, since the tiny default's eval set needs several hundred pictures per character to be
# learnable (docs/character-learning.md); in a danbooru-sized DB the share is ~0.05%.
HEAD_CHARACTERS = 6
HEAD_POSTS = 500
HEAD_SHARE_MAX = 0.8


def character_head_share(n_posts: int) -> float:
    """The head's share of character draws for a DB of `n_posts` posts."""
    draws = n_posts * float(np.dot(*CHARACTERS_PER_POST))
    return min(HEAD_SHARE_MAX, HEAD_CHARACTERS * HEAD_POSTS / draws)


# Consonant+vowel syllables: a word splits uniquely after each vowel, so distinct digit
# strings give distinct words.
_SYL = np.array([c + v for c in ("k", "s", "t", "n", "h", "m", "r", "g", "d", "b", "p", "y")
                 for v in "aiueo"])
_NOUNS = np.array(["hair", "eyes", "dress", "skirt", "ribbon", "gloves", "boots", "hat",
                   "sleeves", "shirt", "background", "print", "ornament", "legwear", "jacket",
                   "bag", "flower", "wings", "belt", "scarf", "collar", "hold", "grab", "trim"])
_SERIES_SUFFIX = np.array(["_quest", "_online", "_project", "_academy", "_saga", "_chronicle",
                           "_girls", "_heart", "_story", "_world"])


@dataclass(frozen=True)
class Vocab:
    """Tag table rows (by vocab index) plus each type's vocab indices in frequency order."""

    tag_id: np.ndarray  # int64 [V]
    name: np.ndarray  # str [V]
    type: np.ndarray  # int8 [V]
    general: np.ndarray  # vocab indices, rank order (Zipf-sampled general tags)
    artist: np.ndarray
    character: np.ndarray
    copyright: np.ndarray
    series: np.ndarray  # per character rank: vocab index of its copyright
    people: np.ndarray  # [combos, width] vocab indices, -1 padded
    people_weight: np.ndarray  # float64 [combos]
    meta: dict[str, int]  # meta name -> vocab index
    forced: np.ndarray  # vocab indices that must occur at least once in any DB
    character_head_share: float  # see HEAD_CHARACTERS

    @property
    def size(self) -> int:
        return len(self.name)


def vocab_sizes(n_posts: int) -> dict[int, int]:
    """Generated names per type; grows with the DB so large DBs have danbooru-like tails."""
    n_char = max(300, n_posts // 1000)
    return {
        GENERAL: int(np.clip(n_posts // 25, 1500, 300_000)),
        ARTIST: int(np.clip(n_posts // 25, 600, 300_000)),
        CHARACTER: n_char,
        COPYRIGHT: max(100, n_char // 4),
    }


def _word(idx: np.ndarray, n_syl: int) -> np.ndarray:
    """Pseudo-word of `n_syl` syllables, unique per idx in [0, len(_SYL) ** n_syl)."""
    base = len(_SYL)
    # An affine bijection mod base**n_syl (7919 is coprime to 60**k) so that neighbouring
    # indices do not share their syllables.
    idx = (idx * 7919 + 4801) % base**n_syl
    out = _SYL[idx % base]
    for k in range(1, n_syl):
        out = np.char.add(out, _SYL[(idx // base**k) % base])
    return out


def _generated_names(kind: int, n: int) -> np.ndarray:
    idx = np.arange(n, dtype=np.int64)
    if kind == GENERAL:
        word = _word(idx // len(_NOUNS), 3)
        return np.char.add(np.char.add(word, "_"), _NOUNS[idx % len(_NOUNS)])
    if kind == ARTIST:
        base = len(_SYL) ** 3
        names = _word(idx % base, 3)
        lap = idx // base  # past the 3-syllable space: a numeric suffix keeps names unique
        return np.where(lap > 0, np.char.add(names, lap.astype(str)), names)
    if kind == CHARACTER:
        # the family name alone is unique per idx; the given name only adds variety
        return np.char.add(np.char.add(_word(idx, 2), "_"), _word(idx + 7, 3))
    k = len(_SERIES_SUFFIX)
    return np.char.add(_word(idx // k + 11, 3), _SERIES_SUFFIX[idx % k])


def _with_head(head: tuple[str, ...], generated: np.ndarray) -> np.ndarray:
    return np.concatenate([np.array(head, dtype=object), generated.astype(object)])


def _spread(head_ranked: np.ndarray, odd: tuple[str, ...], stride: int) -> np.ndarray:
    """Insert `odd` names into a ranked list at ranks len(GENERAL_HEAD) + stride*j."""
    pos = len(GENERAL_HEAD) + stride * np.arange(len(odd))
    pos = np.minimum(pos, len(head_ranked))
    return np.insert(head_ranked, pos - np.arange(len(odd)), np.array(odd, dtype=object))


def build_vocab(rng: np.random.Generator, n_posts: int) -> Vocab:
    """All tags of a synthetic DB; ids are a sparse random set, unrelated to type or rank."""
    sizes = vocab_sizes(n_posts)
    general = _spread(_with_head(GENERAL_HEAD, _generated_names(GENERAL, sizes[GENERAL])),
                      GENERAL_ODD, stride=9)
    copyright_ = _with_head(COPYRIGHT_HEAD, _generated_names(COPYRIGHT, sizes[COPYRIGHT]))
    char_gen = _generated_names(CHARACTER, sizes[CHARACTER])
    # Characters beyond the head belong to a series drawn Zipf-like (franchises hold many).
    series_rank = np.concatenate([
        np.array([COPYRIGHT_HEAD.index(s) for _, s in CHARACTER_HEAD]),
        1 + zipf_draw(rng, len(copyright_) - 1, 1.0, len(char_gen), q=2.0),
    ])
    # Some names carry their series in parentheses, like "hatsune_miku_(append)".
    paren = rng.random(len(char_gen)) < 0.15
    series_names = copyright_[series_rank[len(CHARACTER_HEAD):]].astype(str)
    char_gen = np.where(paren, np.char.add(np.char.add(np.char.add(char_gen, "_("), series_names),
                                           ")"), char_gen)
    character = _with_head(tuple(c for c, _ in CHARACTER_HEAD), char_gen)
    artist = _with_head(ARTIST_HEAD, _generated_names(ARTIST, sizes[ARTIST]))
    meta = np.array(META_DERIVED + tuple(m for m, _ in META_RANDOM), dtype=object)
    special = np.array(SPECIAL_TAGS + ("solo",), dtype=object)

    parts = [(GENERAL, general), (GENERAL, special), (ARTIST, artist), (CHARACTER, character),
             (COPYRIGHT, copyright_), (META, meta)]
    name = np.concatenate([p for _, p in parts])
    types = np.concatenate([np.full(len(p), t, dtype=np.int8) for t, p in parts])
    uniq, counts = np.unique(name.astype(str), return_counts=True)
    if (counts > 1).any():
        raise KxlError(f"synthetic vocab: duplicate tag name {uniq[counts > 1][0]!r} (a bug)")
    starts = np.cumsum([0] + [len(p) for _, p in parts])
    rank = [np.arange(starts[i], starts[i + 1]) for i in range(len(parts))]
    index = {n: i for i, n in enumerate(name[starts[1]:starts[2]], start=starts[1])}
    index.update({n: i for i, n in enumerate(meta, start=starts[5])})
    return Vocab(
        tag_id=_sparse_ids(rng, len(name)),
        name=name,
        type=types,
        general=rank[0], artist=rank[2], character=rank[3], copyright=rank[4],
        series=rank[4][series_rank],
        people=_people_matrix(index),
        people_weight=np.array([w for _, w in PEOPLE]),
        meta={m: index[m] for m in meta},
        forced=_forced(name, index),
        character_head_share=character_head_share(n_posts),
    )


def _sparse_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct tag ids from [1, 3n], in random order over the vocabulary."""
    pool = np.sort(rng.choice(3 * n, size=n, replace=False)).astype(np.int64) + 1
    return pool[rng.permutation(n)]


def _people_matrix(index: dict[str, int]) -> np.ndarray:
    width = max(len(tags) for tags, _ in PEOPLE)
    mat = np.full((len(PEOPLE), width), -1, dtype=np.int64)
    for row, (tags, _) in enumerate(PEOPLE):  # a few dozen fixed combinations
        mat[row, : len(tags)] = [index[t] for t in tags]
    return mat


def _forced(name: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Every hand-picked tag, so each captioner rule is exercised even in a tiny DB.
    (Not characters: a character always comes with its series, which forcing would break.)"""
    head = set(GENERAL_ODD) | set(ARTIST_HEAD) | set(COPYRIGHT_HEAD)
    fixed = np.flatnonzero(np.isin(name.astype(str), sorted(head)))
    return np.union1d(fixed, np.fromiter(index.values(), dtype=np.int64))


def zipf_draw(
    rng: np.random.Generator, n: int, s: float, size: int, q: float = 0.0,
    head: int = 0, head_share: float = 0.0,
) -> np.ndarray:
    """`size` ranks in [0, n) with P(rank r) proportional to (r + 1 + q) ** -s.

    q > 0 (Zipf-Mandelbrot) flattens the head, as danbooru's tag counts are flat at the top.
    `head` > 0 mixes in a uniform draw over ranks [0, head) with weight `head_share`. Either way
    one uniform number per draw, so the generator's later draws do not depend on the mixture.
    """
    pmf = (np.arange(1, n + 1, dtype=np.float64) + q) ** -s
    if head > 0:
        head = min(head, n)
        pmf = (1.0 - head_share) * pmf / pmf.sum()
        pmf[:head] += head_share / head
    cdf = np.cumsum(pmf)
    return np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").clip(0, n - 1)
