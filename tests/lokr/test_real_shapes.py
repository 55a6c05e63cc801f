"""The LoKr at SDXL's real shapes (issue 18 section 2), on the meta device: no weights.

Expected numbers come from SDXL's published architecture and the model card, not from kxl:
SDXL base 1.0 has a 2,567,463,684-parameter UNet, CLIP-L (123,060,480) and OpenCLIP bigG with
projection (694,659,840) text encoders and an 83,653,863-parameter VAE; its UNet holds 70
transformer blocks (levels 1/2: 2 and 10 per block, 2 down + 3 up blocks each, plus 10 in the
middle); the card says the LoKr file is under 800 MB and the text encoders are trained."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from kxl.lokr.network import LokrSpec
from kxl.lokr.table import SDXL_CONFIGS, file_bytes, lokr_table, markdown

pytestmark = pytest.mark.slow  # ~20 s: LyCORIS walks the 3.5B-parameter module tree

ROOT = Path(__file__).resolve().parents[2]
PRESET = str(ROOT / "config/lycoris/kohaku_xl.toml")


def test_shipped_configs_are_sdxl_base_1_0() -> None:
    from kxl.model.load import _meta_models

    models = _meta_models(SDXL_CONFIGS)
    count = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    assert count == {"unet": 2_567_463_684, "text_encoder": 123_060_480,
                     "text_encoder_2": 694_659_840, "vae": 83_653_863}


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    return lokr_table(SDXL_CONFIGS, LokrSpec(preset=PRESET))


def _sum(table: pl.DataFrame, col: str, **where: str) -> int:
    sel = table
    for k, v in where.items():
        sel = sel.filter(pl.col(k) == v)
    return int(sel[col].sum())


def test_kohaku_preset_at_real_shapes(table: pl.DataFrame) -> None:
    # every CLIP layer: q, k, v, out + fc1, fc2 (12 + 32 layers), factor 8
    te = table.filter(pl.col("component").is_in(["te1", "te2"]) & (pl.col("kind") != "norm "
                                                                    "(trained)"))
    assert int(te["modules"].sum()) == 6 * (12 + 32)
    assert {f for fs in te["factors"] for f in fs} == {8}
    # 70 transformer blocks x (attn1 + attn2) x (q, k, v, out), factor 4 (the preset's Attention)
    assert _sum(table, "modules", component="unet", kind="attention") == 70 * 8
    assert _sum(table, "modules", component="unet", kind="feed-forward") == 70 * 2
    factors = {k: {f for fs in g["factors"] for f in fs}
               for (k,), g in table.filter(pl.col("component") == "unet").group_by("kind")}
    assert factors["attention"] == {4} and factors["feed-forward"] == {2}
    assert factors["resnet"] == {8} and factors["norm (trained)"] == set()
    # the card: under 800 MB (fp16, the released files' precision); the text encoders train
    total = int(table["params"].sum())
    assert file_bytes(total, "fp16") < 800e6 < file_bytes(total, "fp32")
    assert _sum(table, "params", component="te2") > 0


def test_markdown_table_is_the_docs_table(table: pl.DataFrame) -> None:
    """docs/lokr-real-shapes.md holds what `kxl lokr-table` prints today."""
    doc = (ROOT / "docs/lokr-real-shapes.md").read_text()
    assert markdown(table) in doc
