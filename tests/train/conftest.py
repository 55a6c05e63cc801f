from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory):
    """6 optimizer steps, plan world 2 x accumulation 1, batch 2."""
    from fixtures_train import write_tiny_inputs

    return write_tiny_inputs(tmp_path_factory.mktemp("inputs"), steps=6, world=2, accum=1, batch=2)
