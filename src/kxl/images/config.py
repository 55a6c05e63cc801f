"""Typed config of stage images (the `images:` section of config/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
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
class ShardFamily:
    """One kind of shard file of the HF dataset: an id's file is `pattern` formatted with
    shard = id % modulus (checked by `kxl.images.families.check_families`)."""

    name: str  # the family's folder in the shards folder: [a-z0-9][a-z0-9_-]*
    pattern: str  # repo path template whose only field is `{shard...}`, ending in .tar
    modulus: int

    def remote(self, shard: int) -> str:
        """Repository path of the file serving ids with id % modulus == shard."""
        return self.pattern.format(shard=shard)

    def local(self, shard: int) -> str:
        """Its path in the shards folder: `{name}/{base name of the repo path}`."""
        return f"{self.name}/{PurePosixPath(self.remote(shard)).name}"


@dataclass(frozen=True)
class HuggingfaceImages:
    """`images.huggingface`: the pinned HF dataset the full run reads its shards from."""

    repo_id: str
    revision: str
    # In precedence order: an id found in several families' files is taken from the last one.
    families: list[ShardFamily] = field(
        default_factory=lambda: [ShardFamily("original", "images/data-{shard:04d}.tar", 1000)]
    )


@dataclass(frozen=True)
class ImagesConfig:
    """The whole `images:` section (what `kxl extract-images` receives)."""

    max_pixels: int  # decoded width*height above this -> too_large, checked on the header
    max_file_bytes: int  # a member larger than this is never read -> too_large
    on_bad_shard: Literal["error", "drop"]  # a shard that is not a readable tar
    synthetic: SyntheticImages
    huggingface: HuggingfaceImages
