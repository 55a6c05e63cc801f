from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models():
    from fixtures_train import build_models

    return build_models("tiny", seed=0)
