"""Shared pytest setup: keep CPU tests reproducible and light on 2 cores."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    """One run of the default pipeline, shared by the e2e and cluster tests."""
    from pipeline_run import TARGETS, run_default

    return run_default(tmp_path_factory.mktemp("run-a"), TARGETS)
