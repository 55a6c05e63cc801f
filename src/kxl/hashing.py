"""Content hashes used by provenance, checkpoints and verification."""

from __future__ import annotations

import hashlib
import os

_CHUNK = 1 << 22


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_tree(root: str | os.PathLike[str]) -> str:
    """One sha256 over a folder's files: each file's relative path and content hash, sorted."""
    from pathlib import Path

    base = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in base.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(base).as_posix()}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()
