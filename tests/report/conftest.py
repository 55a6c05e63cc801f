"""The hand-made run of run_fixtures.py as a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_fixtures import make_run


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """The hand-made run under tmp_path/results (and tmp_path/logs); returns results/."""
    return make_run(tmp_path)
