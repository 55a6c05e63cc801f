"""Typed config of stage images (the `images:` section of config/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SyntheticImages:
    """`images.synthetic`: how `kxl synth-images` draws the default run's shards."""

    seed: int
    max_side: int  # long side cap in pixels, like webp-4Mpixel's <= 4 MP downscale
    n_missing: int = 0  # ids left out of every shard -> missing_file
    n_truncated: int = 0  # files cut in half -> corrupt_image
    n_zero_byte: int = 0  # empty files -> corrupt_image
    n_oversized: int = 0  # PNG headers claiming 100000 x 100000 pixels -> too_large


@dataclass(frozen=True)
class HuggingfaceImages:
    """`images.huggingface`: the pinned HF dataset the full run reads its shards from."""

    repo_id: str
    revision: str
    # Remote file name templates, formatted with shard = id % 1000; each is linked into the
    # shards folder under its base name, which must look like `data-NNNN.tar`.
    filenames: list[str] = field(default_factory=lambda: ["images/data-{shard:04d}.tar"])


@dataclass(frozen=True)
class ImagesConfig:
    """The whole `images:` section (what `kxl extract-images` receives)."""

    max_pixels: int  # decoded width*height above this -> too_large, checked on the header
    max_file_bytes: int  # a member larger than this is never read -> too_large
    on_bad_shard: Literal["error", "drop"]  # a shard that is not a readable tar
    synthetic: SyntheticImages
    huggingface: HuggingfaceImages
