"""Fixtures of the images tests (helpers live in images_fixtures.py)."""

from __future__ import annotations

import polars as pl
import pytest
from images_fixtures import make_kept, make_tags


@pytest.fixture
def tags() -> pl.DataFrame:
    return make_tags()


@pytest.fixture
def kept() -> pl.DataFrame:
    return make_kept()
