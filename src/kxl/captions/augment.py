"""Per-step caption augmentation: kohya-ss/sd-scripts v0.8.7 `process_caption`, per sample.

What v0.8.7 (`library/train_util.py`, `BaseDataset.process_caption`) does, in its order, and
what kxl keeps of it:

1. caption prefix/suffix: not used by the run (none).
2. caption dropout: `random.random() < caption_dropout_rate`, drawn only when the rate is
   > 0; a dropped caption becomes "" and nothing below runs. Kept (`caption_dropout`).
3. wildcards off (the run's setting): only the first line of the caption is used. Kept.
4. Only when shuffling or tag dropout is on (or token warm-up, not used): split at the first
   keep separator into fixed and flex parts, and at a second one (if any) into flex and a
   fixed suffix; each part is split on `caption_separator`, tokens stripped, empty ones
   dropped. Without a keep separator in the caption every token is flex, stripped but *not*
   filtered for emptiness, and `keep_tokens` would fix the first N (kxl: keep_tokens = 0).
   Then `random.shuffle(flex)` if shuffling, THEN tag dropout: each flex token in order is
   kept if `random.random() >= rate` (no draws at rate 0). The result is
   `", ".join(fixed + flex + fixed_suffix)`. With neither shuffle nor dropout the caption
   is used as is, keep separator included - an sd-scripts quirk reproduced here.
5. `secondary_separator`, if set, is replaced by `caption_separator` afterwards. Kept.
6. textual-inversion replacements: not used.

Difference, on purpose: sd-scripts draws from the process-global `random` (seeded once per
epoch, forked into DataLoader workers, the same on every rank), so the draws depend on which
worker saw which sample. kxl gives every sample its own `random.Random(sample_seed)` - the
same Mersenne Twister, `shuffle` and `random()` algorithms - with the seed taken from the
data-order plan, so a step's captions are reproducible and resume-safe.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def augment(
    caption: str,
    sample_seed: int,
    shuffle: bool,
    tag_dropout: float,
    keep_separator: str = "|||",
    caption_separator: str = ",",
    *,
    caption_dropout: float = 0.0,
    secondary_separator: str | None = None,
) -> str:
    """One sample's caption for one step, as sd-scripts v0.8.7 would make it (see module doc)."""
    rng = random.Random(sample_seed)
    if caption_dropout > 0 and rng.random() < caption_dropout:
        return ""
    caption = caption.split("\n")[0]
    if shuffle or tag_dropout > 0:
        fixed, flex, suffix = _split(caption, keep_separator, caption_separator)
        if shuffle:
            rng.shuffle(flex)
        if tag_dropout > 0:
            flex = [token for token in flex if rng.random() >= tag_dropout]
        caption = ", ".join(fixed + flex + suffix)
    if secondary_separator:
        caption = caption.replace(secondary_separator, caption_separator)
    return caption


def augment_many(
    captions: Sequence[str],
    seeds: Sequence[int],
    shuffle: bool,
    tag_dropout: float,
    keep_separator: str = "|||",
    caption_separator: str = ",",
    *,
    caption_dropout: float = 0.0,
    secondary_separator: str | None = None,
) -> list[str]:
    """`augment` over one training batch (captions and plan seeds of equal length)."""
    if len(captions) != len(seeds):
        raise ValueError(f"augment_many: {len(captions)} captions but {len(seeds)} seeds")
    return [
        augment(
            c, s, shuffle, tag_dropout, keep_separator, caption_separator,
            caption_dropout=caption_dropout, secondary_separator=secondary_separator,
        )
        for c, s in zip(captions, seeds, strict=True)  # one batch: a handful of samples
    ]


def _tokens(part: str, sep: str) -> list[str]:
    return [t.strip() for t in part.split(sep) if t.strip()]


def _split(caption: str, keep: str, sep: str) -> tuple[list[str], list[str], list[str]]:
    """(fixed, flex, fixed suffix) tokens as v0.8.7 splits them."""
    if not (keep and keep in caption):
        return [], [t.strip() for t in caption.strip().split(sep)], []
    fixed, flex = caption.split(keep, 1)
    suffix: list[str] = []
    if keep in flex:
        flex, rest = flex.split(keep, 1)
        suffix = _tokens(rest, sep)
    return _tokens(fixed, sep), _tokens(flex, sep), suffix
