"""Fixtures of the manifest tests (data in manifest_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from manifest_fixtures import write_tables


@pytest.fixture
def tables(tmp_path: Path) -> dict[str, Path]:
    """The four input tables written like the upstream stages write them."""
    return write_tables(tmp_path)
