"""Hand-made inputs for the eval tests, in the documented formats (docs/formats.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from kxl.images import render

ROOT = Path(__file__).resolve().parents[2]
EVAL_KXL = ROOT / ".venv-eval" / "bin" / "kxl"
needs_eval_env = pytest.mark.skipif(
    not EVAL_KXL.is_file(),
    reason="the eval env is missing: `make .venv-eval/.installed` (imgutils pins numpy<2)")

TAGS = pl.DataFrame({
    "id": [1, 2, 3, 10, 11, 12, 13, 20, 21],
    "name": ["1girl", "1boy", "1other", "alice_(wonder)", "bob", "cyd_x", "dee", "series_a",
             "series_b"],
    "type": [0, 0, 0, 2, 2, 2, 2, 3, 3],
}, schema={"id": pl.Int64, "name": pl.String, "type": pl.Int8})


def kept_table(rows: list[tuple[int, list[int], list[int], list[int], int]]) -> pl.DataFrame:
    """rows: (id, general, character, copyright, fav_count)."""
    return pl.DataFrame({
        "id": [r[0] for r in rows], "fav_count": [r[4] for r in rows],
        "tags_general": [r[1] for r in rows], "tags_character": [r[2] for r in rows],
        "tags_copyright": [r[3] for r in rows],
    }, schema={"id": pl.Int64, "fav_count": pl.Int32, "tags_general": pl.List(pl.Int64),
               "tags_character": pl.List(pl.Int64), "tags_copyright": pl.List(pl.Int64)})


def dataset_table(ids: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"id": ids, "file": [f"files/{i % 1000:04d}/{i}.png" for i in ids]},
                        schema={"id": pl.Int64, "file": pl.String})


def render_character(name: str, post: int, size: int = 64, series: str | None = None,
                     seed: int = 7) -> np.ndarray:
    """uint8 [size, size, 3]: post `post` of character `name`, drawn by kxl.images.render."""
    ident = render.identities(render.name_hashes([name]), np.array([True]))
    has = series is not None
    srgb = render.series_colours(render.name_hashes([series or "x"]), np.array([has]))
    rng = np.random.Generator(np.random.PCG64([seed, post]))
    return render.render(size, size, ident, 0, srgb[0], post % 4, rng).transpose(1, 2, 0)


def save_png(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def run_eval_kxl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(EVAL_KXL), *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
