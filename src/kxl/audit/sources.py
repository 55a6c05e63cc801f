"""Turn a diff operand (local path, released name, or hf://repo/file@revision) into a file."""

from __future__ import annotations

import os
from pathlib import Path

from kxl.audit.config import AuditConfig, Released
from kxl.errors import KxlError
from kxl.hashing import sha256_file


def parse_hf(spec: str) -> Released:
    """`hf://owner/repo/path/in/repo@revision` -> Released (revision required: pin it)."""
    body, at, revision = spec.removeprefix("hf://").rpartition("@")
    parts = body.split("/")
    if not at or len(parts) < 3 or not revision:
        raise KxlError(f"{spec!r}: expected hf://<owner>/<repo>/<file>@<revision>")
    return Released("/".join(parts[:2]), "/".join(parts[2:]), revision)


def fetch_released(rel: Released, offline: bool) -> Path:
    """The file from the HF cache (downloaded when online); sha256 checked when pinned."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    # read at call time: huggingface_hub fixes its default cache when first imported
    cache = os.environ.get("HF_HUB_CACHE") or None
    try:
        path = Path(hf_hub_download(rel.repo_id, rel.filename, revision=rel.revision,
                                    cache_dir=cache, local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        raise KxlError(f"{rel.repo_id}@{rel.revision}/{rel.filename}: not in the HF cache "
                       "(HF_HUB_CACHE) and offline; run once online or point HF_HUB_CACHE at a "
                       "cache holding it") from exc
    if rel.sha256 is not None:
        digest = sha256_file(path)
        if digest != rel.sha256:
            raise KxlError(f"{rel.repo_id}/{rel.filename}@{rel.revision}: sha256 {digest} != "
                           f"pinned {rel.sha256}; fix the pin or the revision")
    return path


def resolve(spec: str, cfg: AuditConfig, offline: bool) -> Path:
    """A local path if it exists, else a released name from config, else hf://... ."""
    if spec.startswith("hf://"):
        return fetch_released(parse_hf(spec), offline)
    rel = cfg.release(spec)
    if rel is not None:
        return fetch_released(rel, offline)
    path = Path(spec)
    if not path.exists():
        raise KxlError(f"{spec}: no such file or directory, and not a released name "
                       f"({sorted(cfg.released)}) or hf://<owner>/<repo>/<file>@<revision>")
    return path
