"""fetch-base through a local HF cache that holds the TINY model under the real names."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.model.config import HuggingfaceBase
from kxl.model.fetch import SDXL_CONFIG_FILES, fetch_base
from kxl.model.load import load_sdxl

from .conftest import BuiltBase

COMMIT = "a" * 40
CONFIG_COMMIT = "462165984030d82259a11f4367a4eed129e94a7b"


def _cfg(sha: str | None) -> HuggingfaceBase:
    return HuggingfaceBase(
        repo_id="KBlueLeaf/Kohaku-XL-Delta", filename="kohaku-xl-delta-rev1.safetensors",
        revision="main", sha256=sha, config_repo_id="stabilityai/stable-diffusion-xl-base-1.0",
        config_revision=CONFIG_COMMIT)


@pytest.fixture
def cache(tiny_base: BuiltBase, tmp_path):  # type: ignore[no-untyped-def]
    """The HF cache layout: refs/<branch> -> commit, snapshots/<commit>/<path> plain files."""
    root = tmp_path / "hub"
    repo = root / "models--KBlueLeaf--Kohaku-XL-Delta"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    shutil.copyfile(tiny_base.model, snap / "kohaku-xl-delta-rev1.safetensors")
    conf = root / "models--stabilityai--stable-diffusion-xl-base-1.0" / "snapshots" / CONFIG_COMMIT
    for name in SDXL_CONFIG_FILES:
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_base.config_dir / name, conf / name)
    return root


def test_fetch_offline_then_load(cache, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, cdir = tmp_path / "res" / "base.safetensors", tmp_path / "res" / "config"
    digest = fetch_base(_cfg(sha256_file(tiny_base.model)), out, cdir, cache_dir=str(cache),
                        offline=True)
    assert digest == sha256_file(tiny_base.model)
    assert out.is_symlink() and str(cache) in str(out.resolve())
    comps = load_sdxl(out, cdir)  # the real loading path, on what fetch-base produced
    assert comps.tokenizer_2.pad_token == "!"


def test_sha_mismatch_is_refused(cache, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(KxlError, match="sha256 .* != pinned"):
        fetch_base(_cfg("0" * 64), tmp_path / "b.safetensors", tmp_path / "c",
                   cache_dir=str(cache), offline=True)
    assert not (tmp_path / "b.safetensors").exists()


def test_missing_from_cache_offline(cache, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = dataclasses.replace(_cfg(None), filename="other.safetensors")
    with pytest.raises(KxlError, match="not in the HF cache"):
        fetch_base(cfg, tmp_path / "b.safetensors", tmp_path / "c", cache_dir=str(cache),
                   offline=True)
