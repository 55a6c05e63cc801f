"""kxl captions vs the real HakuBooru 0.0.2 `KohakuCaptioner`, byte for byte, on the same DB."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from haku_reference import FakeDB, build_db, read_db, reference_captions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kxl.captions.kohaku import CaptionsConfig, make_captions

SPECIAL = [
    "1girl", "2girls", "3girls", "4girls", "5girls", "6+girls", "multiple_girls",
    "1boy", "2boys", "3boys", "4boys", "5boys", "6+boys", "multiple_boys", "male_focus",
    "1other", "2others", "3others", "4others", "5others", "6+others",
]
GENERAL = [
    "long_hair", "solo", "smile", "^_^", ">_<", "o_o", "^_^;", "a_b", "ab_c", "x", "",
    " ", "\u3000", "\x1f", "\x85", "\t \n", "_", "\u200b", "é_è", "\U0001f642_\U0001f642",
    "ｆｏｏ_bar", "bad_anatomy", "commentary_like_general", " padded_name ", "a,b",
    "tag|||with_keep", "hat_(symbol)", "1girl_(cosplay)", "Multiple_Girls", "male focus",
]
CHARACTER = ["hatsune_miku", "saber_(fate)", "hatsune_miku_(append)", "c_c", "multiple_others"]
COPYRIGHT = ["vocaloid", "fate/stay_night", "a_b_c", "   "]
ARTIST = [
    "banned_artist", "xbannedx", "BANNED_upper", "bann_ed", "artist_commentary_fan", "ke-ta",
    "o_o_o", "\u2028",
]
META = [
    "highres", "absurdres", "commentary_request", "commentary", "bad_id", "bad_pixiv_id",
    "translated", "translation_request", "md5_mismatch", "revision", "audio", "video",
    "animated", "ink_(medium)", "traditional_media", "Bad_id", "TRANSLATED", "non-web_source",
]
CREATED = [
    "2003-06-01T00:00:00.000-04:00", "2004-12-31T23:59:59.999-05:00",
    "2005-01-01T00:00:00.000+09:00", "2007-07-07T07:07:07.000-04:00", "2010-12-31T23:59:59Z",
    "2011-01-01T00:00:00.000-05:00", "2014-12-31T23:59:59.000-05:00", "2015-01-01 00:00:00",
    "2017-12-31T23:59:59.000-05:00", "2018-01-01T00:00:00.000-05:00", "2020-12-31",
    "2021-01-01T00:00:00+0900", "2023-11-11T11:11:11.111111-05:00", "2024-12-31T23:59:59Z",
    "2025-01-01T00:00:00.000-05:00", "2026-03-03T03:03:03.000-05:00",
    # weird values: each goes through the dateutil fallback or the invalid-date rule
    "", "garbage", "2005-02-29T00:00:00.000-05:00", "2004-02-29T12:00:00.000-05:00",
    "2016/05/03 12:00", "May 3 2016", "0099-01-01", "1999-12-31T23:59:59.000-05:00",
    "20050524", "2005-05-24T24:00:00", "2005-13-01", "  2012-01-01  ", "2019-06-01T10:00",
    "2009-05-24T03:35:31,5", "2013-05-24T03:35:31.1234567", "2022-01-01T00:00:00+99:00",
]
# Each rating's fav_count percentiles 90/75/60/45/30/10 from HakuBooru's table (straddled below).
THRESHOLDS = [(27, 16, 10, 7, 4, 1), (56, 30, 19, 13, 8, 2), (132, 75, 49, 33, 21, 8),
              (190, 106, 69, 45, 27, 9)]
IDS_NEAR_CUTOFF = [7_099_999, 7_100_000, 7_100_001, 7_349_999]


def edge_case_db(seed: int) -> FakeDB:
    """Every rule's edge cases plus seeded random posts; relations inserted interleaved."""
    rng = random.Random(seed)
    data = FakeDB()
    by_type: dict[int, list[int]] = {}
    for code, names in enumerate([GENERAL + SPECIAL, ARTIST, CHARACTER, COPYRIGHT, META]):
        for name in names:
            tag_id = rng.randrange(1, 10**7)
            while any(t[0] == tag_id for t in data.tags):
                tag_id = rng.randrange(1, 10**7)
            data.tags.append((tag_id, name, code))
            by_type.setdefault(code, []).append(tag_id)
    all_ids = [t[0] for t in data.tags]
    specials = [t[0] for t in data.tags if t[1] in SPECIAL]
    favs = [-1, 0, 10**6] + [v + d for row in THRESHOLDS for v in row for d in (-1, 0, 1)]
    post_ids = rng.sample(range(1, 7_000_000), 700) + IDS_NEAR_CUTOFF
    posts_tags: list[list[int]] = []
    for i, post_id in enumerate(post_ids):
        rating = i % 4
        fav = favs[i % len(favs)] if i < 2 * len(favs) else rng.randrange(-2, 400)
        created = CREATED[i % len(CREATED)]
        data.posts.append((post_id, created, rating, fav))
        shape = i % 5
        if shape == 0:
            tags: list[int] = []  # an empty post
        elif shape == 1:
            tags = rng.sample(specials, rng.randrange(1, 4)) + rng.sample(all_ids, 5)
        elif shape == 2:
            tags = [rng.choice(by_type[rng.randrange(5)]) for _ in range(rng.randrange(1, 12))]
        else:
            tags = rng.sample(all_ids, rng.randrange(1, 40))
        if i % 7 == 0 and tags:
            tags.append(tags[0])  # a repeated relation
        posts_tags.append(tags)
    # Interleave posts' relations so rowid order differs from tag id order and post order.
    cursors = [0] * len(posts_tags)
    pending = [i for i, t in enumerate(posts_tags) if t]
    while pending:
        i = rng.choice(pending)
        data.relations.append((post_ids[i], posts_tags[i][cursors[i]]))
        cursors[i] += 1
        if cursors[i] == len(posts_tags[i]):
            pending.remove(i)
    return data


def _kxl_captions(db_path: Path) -> dict[int, str]:
    kept, tags = read_db(db_path)
    out = make_captions(kept, tags, CaptionsConfig())
    return dict(zip(out["id"].to_list(), out["caption"].to_list(), strict=True))


def test_edge_case_db_is_byte_identical_to_hakubooru(tmp_path: Path) -> None:
    db_path = tmp_path / "danbooru.db"
    build_db(db_path, edge_case_db(seed=7))
    expected = reference_captions(db_path)
    got = _kxl_captions(db_path)
    assert len(expected) == 704
    assert list(got) == sorted(expected)
    mismatches = [(i, expected[i], got[i]) for i in expected if expected[i] != got[i]]
    assert not mismatches, f"{len(mismatches)} differ, first: {mismatches[0]!r}"
    # The DB really exercised the rules (guards against a fixture that tests nothing).
    joined = "\n".join(expected.values())
    for needle in ("old", "early", "mid", "recent", "newest", "masterpiece", "worst quality",
                   "explicit, nsfw", "^_^", "^ ^;", "saber (fate)", ", |||"):
        assert needle in joined, needle
    assert any(c.startswith(", |||") for c in expected.values())
    assert not any(c.endswith("|||") for c in expected.values())  # a rating tag always follows


TAG = st.tuples(
    st.sampled_from(SPECIAL + GENERAL + CHARACTER + ARTIST + META + COPYRIGHT)
    | st.text(alphabet="ab_ ()|,\u3000\x1c", max_size=6),
    st.integers(0, 4),
)
POST = st.tuples(
    st.sampled_from(IDS_NEAR_CUTOFF) | st.integers(1, 7_500_000),
    st.sampled_from(CREATED),
    st.integers(0, 3),
    st.integers(-2, 300),
    st.lists(st.integers(0, 29), max_size=12),
)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tags=st.lists(TAG, min_size=1, max_size=30, unique_by=lambda t: t[0]),
    posts=st.lists(POST, min_size=1, max_size=8, unique_by=lambda p: p[0]),
    order_seed=st.integers(0, 2**32 - 1),
)
def test_random_small_dbs_match_hakubooru(tags, posts, order_seed) -> None:  # noqa: ANN001
    data = FakeDB(tags=[(100 + i, name, code) for i, (name, code) in enumerate(tags)])
    relations = [
        (p[0], 100 + (k % len(tags))) for p in posts for k in p[4]
    ]
    random.Random(order_seed).shuffle(relations)
    data.posts = [p[:4] for p in posts]
    data.relations = relations
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "small.db"
        build_db(db_path, data)
        assert _kxl_captions(db_path) == reference_captions(db_path)
