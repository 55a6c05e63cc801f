"""`kxl fetch-metadata`: the pinned HF dataset file, sha256-checked, linked into results/.

The file stays in the HF cache (tens of GB); results/ gets an atomic symlink to it. With
HF_HUB_OFFLINE=1 the download resolves from the cache alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from kxl.atomic import atomic_symlink
from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.metadata.config import HuggingFaceConfig


def download(cfg: HuggingFaceConfig) -> Path:
    """Path of `cfg.filename` at `cfg.revision` in the local HF cache (downloading if needed)."""
    from huggingface_hub import hf_hub_download  # lazy: network stack

    try:
        path = hf_hub_download(repo_id=cfg.repo_id, filename=cfg.filename,
                               repo_type="dataset", revision=cfg.revision)
    except Exception as exc:  # hub errors are many types; all mean "not available"
        first = (str(exc).strip().splitlines() or [""])[0]
        raise KxlError(
            f"HF dataset {cfg.repo_id}: cannot get {cfg.filename} at revision {cfg.revision} "
            f"({type(exc).__name__}: {first}); check the network/HF_HUB_CACHE or the pinned "
            "revision in config metadata.huggingface"
        ) from exc
    return Path(path)


def verify(cfg: HuggingFaceConfig, path: Path) -> None:
    """Refuse a file whose sha256 differs from the configured one (when one is configured)."""
    if cfg.sha256 is None:
        return
    actual = sha256_file(path)
    if actual != cfg.sha256.lower():
        raise KxlError(
            f"HF dataset {cfg.repo_id}: {cfg.filename} at revision {cfg.revision} has sha256 "
            f"{actual}, expected {cfg.sha256}; pin the revision that matches or fix "
            "metadata.huggingface.sha256"
        )


def link(target: Path, out: str | os.PathLike[str]) -> Path:
    """Point `out` at `target` atomically (a new symlink renamed over the old name)."""
    return atomic_symlink(target.absolute(), out)


def fetch_metadata(cfg: HuggingFaceConfig, out: str | os.PathLike[str]) -> Path:
    """Download (or find in the cache), verify, and link the metadata DB at `out`."""
    path = download(cfg)
    verify(cfg, path)
    return link(path, out)
