"""HakuBooru 0.0.2's Kohaku captioner, vectorised over all posts at once.

Reproduces `KohakuCaptioner().caption(post, None)` of `hakubooru==0.0.2` (processors
`year_tag, rating_tag, quality_tag_new`; word separator " ", tag separator ", ", keep
separator "|||") byte for byte. The rules, as read from that release:

1. A post's tags come in `posttagrelation` insertion (rowid) order, split by tag type;
   kept.parquet stores exactly that as one List(Int64) column per type. A repeated relation
   repeats the tag. A null list counts as empty.
2. Special tags: *general* tags whose raw name is one of `SPECIAL_TAGS` (1girl ... 6+others,
   multiple_*, male_focus) move out of the general list, keeping their order.
3. Artist tags whose raw name contains "banned" are dropped; meta tags whose raw name contains
   any of `META_BLACKLIST` (case-sensitive substrings: "bad" also drops "bad_id") are dropped.
4. Tag text: a name longer than 3 characters (code points of the raw name) has every "_"
   replaced by the word separator; shorter names (emoticons such as `^_^`) stay as they are.
   Parentheses are kept. A name that is empty or only whitespace by Python's `str.strip`
   (`str.isspace`, which also counts U+001C..U+001F, unlike Unicode White_Space) is skipped.
5. Keep part: special, character, copyright, artist. Flex part: general, meta, then the
   processor tags in processor order: year, rating, quality.
6. Year tag from `dateutil.parser.parse(created_at).year`, 0 when parsing fails (see
   `kxl.captions.dates`), through the reference's if/elif chain: 2005..2010 "old", otherwise
   <= 2014 "early" (so years <= 2004 and unparsable or missing dates are "early" too),
   <= 2017 "mid", <= 2020 "recent", <= 2024 "newest"; later years get no year tag.
7. Rating tags: general "safe", sensitive "sensitive", questionable "nsfw", explicit
   "explicit" then "nsfw" (two tags). A null rating gets none.
8. Quality tag (`quality_tag_new`): none for ids above `quality_max_id` (0.0.2: 7,100,000;
   HakuBooru HEAD later moved it to 7,500,000). Otherwise the first of masterpiece, best,
   great, good, normal, low quality whose per-rating `fav_count` percentile (90, 75, 60, 45,
   30, 10 of `fav_count_percentile_full`) is *strictly* exceeded, else "worst quality".
9. Caption = join(keep) + tag_sep + keep_sep + join(flex): an empty keep part still gives
   ", |||...", and there is no space after "|||".

Where the reference would crash (null rating or fav_count at or below the cut-off) kxl raises
a KxlError naming the post; it also refuses tag ids that tags.parquet lacks or that sit in the
wrong type column, which the reference's inner join would drop silently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from kxl.captions.assemble import KeepFlexJoiner, Part, list_part, scalar_part
from kxl.captions.dates import created_years
from kxl.errors import KxlError

TYPE_COLUMNS = {  # kept.parquet list column -> tags.parquet `type` code
    "tags_general": 0,
    "tags_artist": 1,
    "tags_character": 2,
    "tags_copyright": 3,
    "tags_meta": 4,
}
SPECIAL_TAGS = frozenset({
    "1girl", "2girls", "3girls", "4girls", "5girls", "6+girls", "multiple_girls",
    "1boy", "2boys", "3boys", "4boys", "5boys", "6+boys", "multiple_boys", "male_focus",
    "1other", "2others", "3others", "4others", "5others", "6+others", "multiple_others",
})
META_BLACKLIST = (
    "(medium)", "commentary", "bad", "translat", "request", "mismatch", "revision", "audio",
    "video",
)
BANNED_ARTIST = "banned"
# Every character for which Python's str.isspace() is true (what `str.strip()` removes).
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)
RATING_TAGS = (("safe",), ("sensitive",), ("nsfw",), ("explicit", "nsfw"))
QUALITY_TAGS = (
    "masterpiece", "best quality", "great quality", "good quality", "normal quality",
    "low quality",
)
WORST_QUALITY = "worst quality"
# fav_count percentiles 90, 75, 60, 45, 30, 10 per rating (general, sensitive, questionable,
# explicit): HakuBooru 0.0.2 `metainfo.fav_count_percentile_full`.
FAV_THRESHOLDS = (
    (27, 16, 10, 7, 4, 1),
    (56, 30, 19, 13, 8, 2),
    (132, 75, 49, 33, 21, 8),
    (190, 106, 69, 45, 27, 9),
)
YEAR_TAGS = ((2014, "early"), (2017, "mid"), (2020, "recent"), (2024, "newest"))
YEAR_NAMES = ("old", *(tag for _, tag in YEAR_TAGS))
# Posts captioned per task, THREADS tasks at a time (4.74M kept posts x ~30 tags at full
# scale). A chunk's temporaries peak at ~2.5 KB per post (measured), so two running chunks of
# 2^17 posts hold ~0.7 GB; chunks of 2^19 took ~40% more CPU (page faults on fresh buffers).
CHUNK = 1 << 17
THREADS = 2  # numpy, Arrow and polars release the GIL in the heavy parts
# Tag ids index a dense table (4 bytes each); danbooru's are below 3M.
MAX_TAG_ID = 50_000_000

@dataclass(frozen=True)
class CaptionsConfig:
    """The `captions:` config section: KohakuCaptioner's arguments and the quality cut-off."""

    tag_word_sep: str = " "
    tag_separator: str = ", "
    keep_separator: str = "|||"
    quality_max_id: int = 7_100_000


def make_captions(kept: pl.DataFrame, tags: pl.DataFrame, cfg: CaptionsConfig) -> pl.DataFrame:
    """Caption every post of `kept` (manifest/kept.parquet) using `tags` (metadata/tags.parquet).

    Returns `id` Int64, `caption` String, sorted by id.
    """
    chunks = list(caption_chunks(kept, tags, cfg))
    if not chunks:
        return pl.DataFrame(schema={"id": pl.Int64, "caption": pl.String})
    return pl.concat(chunks)


def caption_chunks(
    kept: pl.DataFrame, tags: pl.DataFrame, cfg: CaptionsConfig, threads: int | None = None
) -> Iterator[pl.DataFrame]:
    """`make_captions` as frames of CHUNK posts in id order, `threads` (default THREADS) chunks
    computed at once.

    Chunks are yielded in order, so the concatenation (or a streamed write) is the same whatever
    the thread count, and a bad input raises the error of its first bad chunk.
    """
    threads = max(1, THREADS if threads is None else threads)
    _check_kept(kept)
    vocab = Vocabulary.build(tag_texts(tags, cfg.tag_word_sep), cfg.tag_separator,
                             cfg.keep_separator)
    if not kept["id"].is_sorted():
        kept = kept.sort("id")
    pool = ThreadPoolExecutor(threads)
    try:
        pending: deque[Future[pl.DataFrame]] = deque()
        for start in range(0, kept.height, CHUNK):
            pending.append(pool.submit(_caption_chunk, kept.slice(start, CHUNK), vocab, cfg))
            if len(pending) > threads:  # at most one chunk queued beyond those running
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# Per tag row: its type code, plus SKIPPED when the tag is left out of captions; one trailing
# UNKNOWN entry stands for ids that no tag has (index -1 of the id table).
SKIPPED, UNKNOWN = 8, 15


@dataclass(frozen=True)
class Vocabulary:
    """Every token a caption can hold: one per tag (by tags.parquet row), then the extras."""

    joiner: KeepFlexJoiner  # the token strings: tag texts (null = skipped tag), then extras
    special: np.ndarray  # per tag row: a special general tag
    types: np.ndarray  # per tag row: type code 0..4
    lut: np.ndarray  # tag id -> tags.parquet row, -1 where no tag has that id (and at the end)
    classes: np.ndarray  # per tag row: type code (+ SKIPPED); trailing UNKNOWN
    extras: dict[str, int]  # year/rating/quality token -> vocabulary index

    @staticmethod
    def build(texts: pl.DataFrame, sep: str, keep_sep: str) -> Vocabulary:
        extra = [*YEAR_NAMES, *(sep.join(t) for t in RATING_TAGS), *QUALITY_TAGS, WORST_QUALITY]
        ids = texts["id"].to_numpy()
        if len(ids) and (ids.min() < 0 or ids.max() > MAX_TAG_ID):
            raise KxlError(f"tags.parquet: tag ids must lie in 0..{MAX_TAG_ID}; rebuild metadata")
        # A dense id -> row table: one gather per tag reference, ~10x faster than hashing. Its
        # trailing -1 is where ids beyond the table land (np.take mode="clip").
        lut = np.full(int(ids.max()) + 2 if len(ids) else 1, -1, dtype=np.int32)
        lut[ids] = np.arange(len(ids), dtype=np.int32)
        types = texts["type"].to_numpy()
        classes = np.append(types + SKIPPED * texts["text"].is_null().to_numpy(), UNKNOWN)
        strings = pl.concat([texts["text"], pl.Series(extra, dtype=pl.String)]).to_arrow()
        return Vocabulary(
            joiner=KeepFlexJoiner(strings, sep, keep_sep),
            special=texts["special"].to_numpy(),
            types=types,
            lut=lut,
            classes=classes.astype(np.int8),
            extras={tok: texts.height + i for i, tok in enumerate(extra)},
        )

    def tokens_of(self, tag_ids: np.ndarray, code: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(tokens, kept mask) of `tag_ids`: tags.parquet rows and which are not skipped; None
        if any id is unknown or of another type than `code`."""
        if len(tag_ids) and tag_ids.min() < 0:
            return None
        rows = self.lut.take(tag_ids, mode="clip")
        cls = self.classes[rows]  # row -1 (no such id) -> the trailing UNKNOWN
        if ((cls & (SKIPPED - 1)) != code).any():
            return None
        return rows, cls == code


def tag_texts(tags: pl.DataFrame, word_sep: str) -> pl.DataFrame:
    """Per tag: id, type, `text` (null when skipped or filtered out) and `special`."""
    _check_tags(tags)
    name = pl.col("name")
    blank = name.str.strip_chars(PY_WHITESPACE).str.len_bytes() == 0
    banned = (pl.col("type") == 1) & name.str.contains(BANNED_ARTIST, literal=True)
    blacklisted = (pl.col("type") == 4) & name.str.contains_any(list(META_BLACKLIST))
    text = (
        pl.when(name.str.len_chars() > 3)
        .then(name.str.replace_all("_", word_sep, literal=True))
        .otherwise(name)
    )
    return tags.select(
        "id",
        "type",
        pl.when(blank | banned | blacklisted).then(None).otherwise(text).alias("text"),
        ((pl.col("type") == 0) & name.is_in(sorted(SPECIAL_TAGS))).alias("special"),
    )


def _text(tag: str) -> pl.Expr:
    return pl.lit(tag)


def year_tag(year: pl.Expr, tok: Callable[[str], pl.Expr] = _text) -> pl.Expr:
    """HakuBooru's if/elif chain on the year (0 = unparsable): rule 6 of the module doc.

    `tok` turns a tag into the value produced (default: the tag text; captions use its token).
    """
    expr = pl.when(year.is_between(2005, 2010)).then(tok("old"))
    for upper, tag in YEAR_TAGS:
        expr = expr.when(year <= upper).then(tok(tag))
    return expr.otherwise(None)


def rating_tag(rating: pl.Expr, sep: str, tok: Callable[[str], pl.Expr] = _text) -> pl.Expr:
    """Rating code 0..3 -> its tag(s) joined by the tag separator; null -> null."""
    expr = pl.when(rating == 0).then(tok(sep.join(RATING_TAGS[0])))
    for code, tags in enumerate(RATING_TAGS[1:], start=1):
        expr = expr.when(rating == code).then(tok(sep.join(tags)))
    return expr.otherwise(None)


def quality_tag(post_id: pl.Expr, rating: pl.Expr, fav_count: pl.Expr, max_id: int,
                tok: Callable[[str], pl.Expr] = _text) -> pl.Expr:
    """`quality_tag_new`: strict `>` against the rating's fav_count percentiles; none > max_id."""
    expr = pl.when(post_id > max_id).then(None)
    for level, tag in enumerate(QUALITY_TAGS):
        threshold = rating.replace_strict(
            [0, 1, 2, 3], [row[level] for row in FAV_THRESHOLDS], return_dtype=pl.Int64
        )
        expr = expr.when(fav_count > threshold).then(tok(tag))
    return expr.otherwise(tok(WORST_QUALITY))


def _caption_chunk(kept: pl.DataFrame, vocab: Vocabulary, cfg: CaptionsConfig) -> pl.DataFrame:
    sep = cfg.tag_separator
    _check_quality_inputs(kept, cfg.quality_max_id)
    tags = {col: _tag_part(kept, col, vocab) for col in TYPE_COLUMNS}
    general_rows, general = tags["tags_general"]
    is_special = vocab.special[general]

    def tok(tag: str) -> pl.Expr:  # the tag's vocabulary index, not its text
        return pl.lit(vocab.extras[tag], dtype=pl.Int64)

    scalars = kept.with_columns(created_years(kept["created_at"], kept["id"])).select(
        year_tag(pl.col("year"), tok).alias("year"),
        rating_tag(pl.col("rating"), sep, tok).alias("rating"),
        quality_tag(pl.col("id"), pl.col("rating"), pl.col("fav_count"), cfg.quality_max_id,
                    tok).alias("quality"),
    )
    extra = [scalar_part(scalars[c]) for c in scalars.columns]
    keep = [(general_rows[is_special], general[is_special]), tags["tags_character"],
            tags["tags_copyright"], tags["tags_artist"]]
    flex = [(general_rows[~is_special], general[~is_special]), tags["tags_meta"], *extra]
    caption = vocab.joiner.join(keep, flex, kept.height)
    return pl.DataFrame({"id": kept["id"], "caption": pl.Series(caption, dtype=pl.String)})


def _tag_part(kept: pl.DataFrame, column: str, vocab: Vocabulary) -> Part:
    """One type column as (rows, vocabulary indices), skipped tags removed."""
    rows, tag_ids = list_part(kept[column])
    code = TYPE_COLUMNS[column]
    found = None if tag_ids.null_count() else vocab.tokens_of(tag_ids.to_numpy(), code)
    if found is None:
        raise _unknown_tag(kept, vocab)
    tokens, keep = found
    return rows[keep], tokens[keep]


def _check_tags(tags: pl.DataFrame) -> None:
    for col in ("id", "name", "type"):
        if tags[col].null_count():
            row = tags[col].is_null().arg_true()[0]
            raise KxlError(f"tags.parquet: column {col!r} is null in row {row}; rebuild metadata")
    dup = tags["id"].is_duplicated()
    if dup.any():
        tag = tags["id"].filter(dup)[0]
        raise KxlError(f"tags.parquet: tag id {tag} appears twice; rebuild metadata")
    bad = ~tags["type"].is_between(0, 4)
    if bad.any():
        tag = tags["id"].filter(bad)[0]
        raise KxlError(f"tags.parquet: tag id {tag} has a type outside 0..4; rebuild metadata")


def _check_kept(kept: pl.DataFrame) -> None:
    if kept["id"].null_count():
        raise KxlError("kept.parquet: column 'id' has nulls; rebuild the manifest")
    dup = kept["id"].is_duplicated()
    if dup.any():
        post = kept["id"].filter(dup)[0]
        raise KxlError(f"kept.parquet: post id {post} appears twice; rebuild the manifest")
    bad = kept["rating"].is_not_null() & ~kept["rating"].is_between(0, 3)
    if bad.any():
        row = kept.filter(bad).row(0, named=True)
        raise KxlError(
            f"kept.parquet: post {row['id']} has rating {row['rating']}, expected 0..3 "
            "(general, sensitive, questionable, explicit); fix the metadata"
        )


def _check_quality_inputs(kept: pl.DataFrame, max_id: int) -> None:
    # The reference indexes the percentile table by rating and compares fav_count: a null in
    # either crashes it for posts at or below the cut-off, so refuse them by name.
    bad = kept.filter(
        (pl.col("id") <= max_id) & (pl.col("rating").is_null() | pl.col("fav_count").is_null())
    )
    if bad.height:
        row = bad.row(0, named=True)
        raise KxlError(
            f"kept.parquet: post {row['id']} has rating={row['rating']} "
            f"fav_count={row['fav_count']}; its quality tag needs both: fix the metadata"
        )


def _unknown_tag(kept: pl.DataFrame, vocab: Vocabulary) -> KxlError:
    """Name the first tag id that is not a tag of its column's type (slow path, errors only)."""
    for column, code in TYPE_COLUMNS.items():
        rows, tag_ids = list_part(kept[column])
        ids = tag_ids.fill_null(-1).to_numpy()
        inside = (ids >= 0) & (ids < len(vocab.lut))
        found = np.full(len(ids), -1, dtype=np.int64)
        found[inside] = vocab.lut[ids[inside]]
        ok = found >= 0
        ok[ok] = vocab.types[found[ok]] == code
        bad = np.flatnonzero(~ok)
        if len(bad):
            first = int(bad[0])
            what = "has another type" if found[first] >= 0 else "is not in tags.parquet"
            return KxlError(
                f"kept.parquet: post {kept['id'][int(rows[first])]} column {column} holds tag id "
                f"{tag_ids[first]}, which {what}; rebuild the manifest from the same metadata"
            )
    return KxlError("kept.parquet: a tag id could not be mapped; rebuild the manifest")
