"""Fixtures shared by the eval tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random-weight tiny SDXL saved as stage 8 saves its base (SGM file + config dir)."""
    testing = pytest.importorskip("fixtures_train")
    from kxl.model.load import save_sdxl_single_file
    from kxl.model.tiny import write_config_dir

    root = tmp_path_factory.mktemp("eval_base")
    m = testing.build_models("tiny", seed=0)
    write_config_dir(root / "config", m)
    m.tokenizer.save_pretrained(str(root / "config" / "tokenizer"))
    m.tokenizer_2.save_pretrained(str(root / "config" / "tokenizer_2"))
    save_sdxl_single_file(m, root / "base.safetensors", {"modelspec.architecture": "sdxl"})
    return root / "base.safetensors", root / "config"
