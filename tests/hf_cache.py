"""A local HF hub cache in huggingface_hub's layout, for released names and hf:// operands
offline (HF_HUB_CACHE pointed at it, HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import shutil
from pathlib import Path


def hf_cache(cache: Path, repo: str, commit: str, files: dict[str, Path]) -> Path:
    """models--owner--name/{refs/main, snapshots/<commit>/<file>}; returns the snapshot dir."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    for name, src in files.items():
        dst = root / "snapshots" / commit / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root / "snapshots" / commit
