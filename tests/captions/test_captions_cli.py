"""`kxl make-captions` end to end on docs/formats.md-shaped parquet fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from kxl import tables
from kxl.captions import kohaku
from kxl.captions.io import CAPTIONS_SCHEMA, KEPT_COLUMNS, TAGS_COLUMNS
from kxl.captions.kohaku import CaptionsConfig, make_captions
from kxl.cli import main
from kxl.provenance import record_path
from kxl.tables import read_columns, read_table, write_table

L = pl.List(pl.Int64)
KEPT_FULL = {  # manifest/kept.parquet as docs/formats.md section 3 defines it
    "id": pl.Int64, "position": pl.Int64, "range_index": pl.Int16, "md5": pl.String,
    "file_ext": pl.String, "width": pl.Int32, "height": pl.Int32, "rating": pl.Int8,
    "fav_count": pl.Int32, "created_at": pl.String, "tags_general": L, "tags_artist": L,
    "tags_character": L, "tags_copyright": L, "tags_meta": L,
}
TAGS_FULL = {"id": pl.Int64, "name": pl.String, "type": pl.Int8, "popularity": pl.Int64}
CONFIG = json.dumps({"tag_word_sep": " ", "tag_separator": ", ", "keep_separator": "|||",
                     "quality_max_id": 7100000})


def _fixtures(tmp_path: Path, general: list[list[int]]) -> tuple[Path, Path]:
    n = len(general)
    kept = pl.DataFrame(
        {
            "id": [10 * (i + 1) for i in range(n)], "position": list(range(n)),
            "range_index": [0] * n, "md5": ["0" * 32] * n, "file_ext": ["png"] * n,
            "width": [512] * n, "height": [768] * n, "rating": [i % 4 for i in range(n)],
            "fav_count": [50] * n, "created_at": ["2019-03-04T05:06:07.000-05:00"] * n,
            "tags_general": general, "tags_artist": [[3]] * n, "tags_character": [[]] * n,
            "tags_copyright": [[]] * n, "tags_meta": [[]] * n,
        },
        schema=KEPT_FULL,
    )
    tags = pl.DataFrame(
        {"id": [1, 2, 3], "name": ["1girl", "long_hair", "ke-ta"], "type": [0, 0, 1],
         "popularity": [9, 8, 7]},
        schema=TAGS_FULL,
    )
    kept_path, tags_path = tmp_path / "kept.parquet", tmp_path / "tags.parquet"
    kept.write_parquet(kept_path)
    tags.write_parquet(tags_path)
    return kept_path, tags_path


def _run(kept: Path, tags: Path, out: Path, config: str = CONFIG) -> int:
    return main(["make-captions", "--kept", str(kept), "--tags", str(tags),
                 "--config-json", config, "--out", str(out)])


def test_cli_writes_captions_and_provenance(tmp_path: Path) -> None:
    kept, tags = _fixtures(tmp_path, [[2, 1], [1], []])
    out = tmp_path / "captions" / "captions.parquet"
    assert _run(kept, tags, out) == 0
    table = read_table(out, CAPTIONS_SCHEMA)
    assert table["caption"].to_list() == [
        "1girl, ke-ta, |||long hair, recent, safe, masterpiece",  # 50 > 27
        "1girl, ke-ta, |||recent, sensitive, best quality",  # 30 < 50 <= 56
        "ke-ta, |||recent, nsfw, great quality",  # 49 < 50 <= 75
    ]
    prov = json.loads(record_path(out).read_text())
    assert prov["stage"] == "captions" and prov["config"]["quality_max_id"] == 7100000
    first = out.read_bytes()
    assert _run(kept, tags, out) == 0 and out.read_bytes() == first  # deterministic bytes


def test_cli_streamed_chunks_give_the_bytes_of_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI writes caption chunks as they come: same bytes as writing the whole table."""
    kept, tags = _fixtures(tmp_path, [[2, 1], [1], [], [2], [1, 1, 2]])
    cfg = CaptionsConfig()
    whole = make_captions(read_columns(kept, KEPT_COLUMNS), read_columns(tags, TAGS_COLUMNS), cfg)
    write_table(whole, tmp_path / "ref.parquet", CAPTIONS_SCHEMA)
    monkeypatch.setattr(kohaku, "CHUNK", 2)
    monkeypatch.setattr(tables, "_ROW_GROUP", 3)  # row groups cut across chunks
    write_table(whole, tmp_path / "ref_small_groups.parquet", CAPTIONS_SCHEMA)
    assert _run(kept, tags, tmp_path / "small.parquet") == 0
    assert (tmp_path / "small.parquet").read_bytes() == (
        tmp_path / "ref_small_groups.parquet").read_bytes()
    monkeypatch.setattr(tables, "_ROW_GROUP", 1 << 20)
    assert _run(kept, tags, tmp_path / "c.parquet") == 0
    assert (tmp_path / "c.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()


@pytest.mark.parametrize(
    ("config", "message"),
    [('{"tag_separator": 3}', "captions.tag_separator: expected str"),
     ('{"shuffle": true}', "unknown key(s) ['shuffle']")],
)
def test_cli_bad_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    config: str, message: str) -> None:
    kept, tags = _fixtures(tmp_path, [[1]])
    assert _run(kept, tags, tmp_path / "c.parquet", config) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_cli_bad_tables_fail_cleanly_without_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept, tags = _fixtures(tmp_path, [[1, 99]])
    out = tmp_path / "c.parquet"
    assert _run(kept, tags, out) == 2
    assert "post 10 column tags_general holds tag id 99" in capsys.readouterr().err
    pl.read_parquet(kept).drop("created_at").write_parquet(kept)
    assert _run(kept, tags, out) == 2
    assert "kept.parquet: missing column 'created_at'" in capsys.readouterr().err
    assert _run(tmp_path / "nope.parquet", tags, out) == 2
    assert "table not found" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".c.parquet.tmp*"))
