"""Shared fixtures: the default synthetic DB (config/config.yaml) made once, and exported once."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml

from kxl.metadata.config import SyntheticConfig
from kxl.metadata.export import export_metadata
from kxl.metadata.synth import synthesize

ROOT = Path(__file__).resolve().parents[2]


def default_config() -> SyntheticConfig:
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())["metadata"]["synthetic"]
    return SyntheticConfig(**cfg)


@dataclass(frozen=True)
class Exported:
    db: Path
    out: Path

    @property
    def posts(self) -> pl.DataFrame:
        return pl.read_parquet(self.out / "posts.parquet")

    @property
    def tags(self) -> pl.DataFrame:
        return pl.read_parquet(self.out / "tags.parquet")

    @property
    def post_tags(self) -> pl.DataFrame:
        return pl.read_parquet(self.out / "post_tags.parquet")

    def sql(self, query: str) -> list[tuple]:
        con = sqlite3.connect(self.db)
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()


@pytest.fixture(scope="session")
def default_db(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """The default run's DB (4000 posts) and its export."""
    root = tmp_path_factory.mktemp("metadata-default")
    db = synthesize(root / "danbooru2023.db", default_config())
    export_metadata(db, root / "out")
    return Exported(db, root / "out")


@pytest.fixture(scope="session")
def small_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic DB (fast to copy and corrupt in validation tests)."""
    root = tmp_path_factory.mktemp("metadata-small")
    return synthesize(root / "small.db", SyntheticConfig(seed=3, n_posts=300, max_id=100_000))


@pytest.fixture
def small_db(small_db_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(small_db_template, tmp_path / "small.db"))
