"""Caption shuffle + tag dropout vs kohya-ss/sd-scripts v0.8.7 `process_caption`."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kxl.captions.augment import augment, augment_many


def sd_scripts_v087(
    caption: str, seed: int, shuffle: bool, tag_dropout: float, keep_sep: str = "|||",
    sep: str = ",", caption_dropout: float = 0.0, secondary: str | None = None,
) -> str:
    """The behaviour of v0.8.7 `BaseDataset.process_caption` (library/train_util.py) for a
    subset with no prefix/suffix, wildcards off, keep_tokens 0 and no token warm-up, written
    from that source with the process-global `random` it uses, seeded the way kxl seeds."""
    random.seed(seed)
    if caption_dropout > 0 and random.random() < caption_dropout:
        return ""
    caption = caption.split("\n")[0]  # wildcards off: first line only
    if shuffle or tag_dropout > 0:
        fixed: list[str] = []
        suffix: list[str] = []
        if keep_sep and keep_sep in caption:
            head, flex_part = caption.split(keep_sep, 1)
            if keep_sep in flex_part:
                flex_part, tail = flex_part.split(keep_sep, 1)
                suffix = [t.strip() for t in tail.split(sep) if t.strip()]
            fixed = [t.strip() for t in head.split(sep) if t.strip()]
            flex = [t.strip() for t in flex_part.split(sep) if t.strip()]
        else:
            flex = [t.strip() for t in caption.strip().split(sep)]
        if shuffle:
            random.shuffle(flex)
        if tag_dropout > 0:
            flex = [t for t in flex if random.random() >= tag_dropout]
        caption = ", ".join(fixed + flex + suffix)
    if secondary:
        caption = caption.replace(secondary, sep)
    return caption


CAPTION = ("1girl, hatsune miku, vocaloid, ke-ta, |||long hair, twintails, smile, ^_^, "
           "highres, newest, safe, masterpiece")
TOKEN = st.text(alphabet="ab c_^()", min_size=1, max_size=6).filter(lambda t: t.strip())
CAPTIONS = st.builds(
    lambda fixed, flex: ", ".join(fixed) + ", |||" + ", ".join(flex),
    st.lists(TOKEN, max_size=5), st.lists(TOKEN, max_size=25),
)
ANY_CAPTION = CAPTIONS | st.text(alphabet="ab ,|\n;", max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    caption=ANY_CAPTION,
    seed=st.integers(0, 2**64 - 1),
    shuffle=st.booleans(),
    rate=st.sampled_from([0.0, 0.15, 0.5, 1.0]) | st.floats(0, 1),
    caption_dropout=st.sampled_from([0.0, 0.0, 0.3]),
    secondary=st.sampled_from([None, ";"]),
)
def test_equals_sd_scripts_v087(caption, seed, shuffle, rate, caption_dropout, secondary) -> None:  # noqa: ANN001
    state = random.getstate()
    try:
        expected = sd_scripts_v087(caption, seed, shuffle, rate, "|||", ",", caption_dropout,
                                   secondary)
    finally:
        random.setstate(state)
    got = augment(caption, seed, shuffle, rate, caption_dropout=caption_dropout,
                  secondary_separator=secondary)
    assert got == expected


def test_does_not_touch_the_global_rng() -> None:
    random.seed(5)
    before = random.getstate()
    augment(CAPTION, 1, True, 0.5)
    assert random.getstate() == before


def _fixed_flex(caption: str) -> tuple[list[str], list[str]]:
    fixed, flex = caption.split("|||")
    return [t.strip() for t in fixed.split(",") if t.strip()], [t.strip() for t in flex.split(",")]


@settings(max_examples=200, deadline=None)
@given(caption=CAPTIONS, seed=st.integers(0, 2**64 - 1), rate=st.floats(0, 1))
def test_fixed_part_first_and_flex_only_shrinks(caption: str, seed: int, rate: float) -> None:
    fixed, flex = _fixed_flex(caption)
    flex = [t for t in flex if t]
    out = [t for t in augment(caption, seed, True, rate).split(", ") if t]
    assert out[: len(fixed)] == fixed
    assert not Counter(out[len(fixed):]) - Counter(flex)


@settings(max_examples=100, deadline=None)
@given(caption=CAPTIONS, seed=st.integers(0, 2**64 - 1))
def test_rate_zero_is_a_permutation_and_rate_one_keeps_only_the_fixed_part(
    caption: str, seed: int
) -> None:
    fixed, flex = _fixed_flex(caption)
    flex = [t for t in flex if t]
    out = [t for t in augment(caption, seed, True, 0.0).split(", ") if t]
    assert out[: len(fixed)] == fixed and Counter(out[len(fixed):]) == Counter(flex)
    assert augment(caption, seed, True, 1.0) == ", ".join(fixed)


def test_deterministic_per_seed_and_varies_across_seeds() -> None:
    assert augment(CAPTION, 123, True, 0.15) == augment(CAPTION, 123, True, 0.15)
    outs = {augment(CAPTION, s, True, 0.15) for s in range(50)}
    assert len(outs) > 40
    assert all(o.startswith("1girl, hatsune miku, vocaloid, ke-ta, ") for o in outs)


def test_no_shuffle_no_dropout_leaves_the_caption_as_is_like_sd_scripts() -> None:
    # v0.8.7 only splits on the keep separator inside its shuffle/dropout branch.
    assert augment(CAPTION, 1, False, 0.0) == CAPTION
    assert augment(CAPTION + "\nsecond line", 1, False, 0.0) == CAPTION


def test_augment_many_matches_augment_and_checks_lengths() -> None:
    caps = [CAPTION, "a, |||b, c, d", ", |||safe"]
    seeds = [1, 2**63 + 5, 0]
    assert augment_many(caps, seeds, True, 0.15) == [
        augment(c, s, True, 0.15) for c, s in zip(caps, seeds, strict=True)
    ]
    with pytest.raises(ValueError, match="3 captions but 2 seeds"):
        augment_many(caps, seeds[:2], True, 0.15)
