"""Hand-made manifest/tags tables in the docs/formats.md layout, and shard helpers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from kxl.images.config import ImagesConfig, SyntheticImages

CHARACTERS = ["hatsune_miku", "hakurei_reimu", "kirisame_marisa", "artoria_pendragon_(fate)"]
SERIES = ["vocaloid", "touhou", "fate_(series)"]
EXTS = ["png", "jpg", "webp", "jpeg"]

KEPT_SCHEMA = {
    "id": pl.Int64, "position": pl.Int64, "range_index": pl.Int16, "md5": pl.String,
    "file_ext": pl.String, "width": pl.Int32, "height": pl.Int32, "rating": pl.Int8,
    "fav_count": pl.Int32, "created_at": pl.String, "tags_general": pl.List(pl.Int64),
    "tags_artist": pl.List(pl.Int64), "tags_character": pl.List(pl.Int64),
    "tags_copyright": pl.List(pl.Int64), "tags_meta": pl.List(pl.Int64),
}


def make_tags() -> pl.DataFrame:
    names = ["1girl", "solo", *CHARACTERS, *SERIES]
    types = [0, 0] + [2] * len(CHARACTERS) + [3] * len(SERIES)
    return pl.DataFrame(
        {"id": np.arange(1, len(names) + 1), "name": names, "type": types,
         "popularity": np.arange(len(names))[::-1]},
        schema={"id": pl.Int64, "name": pl.String, "type": pl.Int8, "popularity": pl.Int64},
    )


def make_kept(n: int = 60, seed: int = 0) -> pl.DataFrame:
    """n posts over a few shards; chars cycle (every 5th post has none); extreme sizes too."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 40_000), n, replace=False)) * 10 + rng.integers(0, 4, n)
    sizes = [(8000, 1000), (1000, 8000), (16, 24), (24, 16), (3000, 3000), (1200, 1800)]
    w = [sizes[i % len(sizes)][0] for i in range(n)]
    h = [sizes[i % len(sizes)][1] for i in range(n)]
    char_ids = [[] if i % 5 == 4 else [3 + i % len(CHARACTERS)] for i in range(n)]
    series_ids = [[] if i % 7 == 6 else [3 + len(CHARACTERS) + i % len(SERIES)] for i in range(n)]
    return pl.DataFrame(
        {
            "id": ids, "position": np.arange(n), "range_index": np.zeros(n),
            "md5": [f"{i:032x}" for i in ids], "file_ext": [EXTS[i % 4] for i in range(n)],
            "width": w, "height": h, "rating": [i % 4 for i in range(n)],
            "fav_count": np.arange(n), "created_at": ["2020-01-01 00:00:00"] * n,
            "tags_general": [[1, 2]] * n, "tags_artist": [[]] * n, "tags_character": char_ids,
            "tags_copyright": series_ids, "tags_meta": [[]] * n,
        },
        schema=KEPT_SCHEMA,
    )


def synth_cfg(**over: int) -> SyntheticImages:
    base = dict(seed=0, max_side=64, n_missing=0, n_truncated=0, n_zero_byte=0, n_oversized=0)
    return SyntheticImages(**{**base, **over})


def images_cfg(**over: object) -> ImagesConfig:
    from kxl.images.config import HuggingfaceImages

    base = dict(max_pixels=1 << 20, max_file_bytes=1 << 24, on_bad_shard="error",
                synthetic=synth_cfg(), huggingface=HuggingfaceImages("r/x", "main"))
    return ImagesConfig(**{**base, **over})


def png_bytes(w: int = 8, h: int = 6, colour: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


def write_shard(path: Path, members: list[tuple[str, bytes, dict]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, attrs in members:
            add(tar, name, data, **attrs)
    return path
