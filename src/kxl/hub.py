"""Model-file operands: a local path, a released name (config `audit.released`) or
`hf://owner/repo/path/in/repo@revision`, resolved to a local file through huggingface_hub's
cache at the pinned revision, the sha256 checked when pinned.

Shared by stage 11 (eval: the compared models) and stage 12 (audit: diff and series operands),
so it lives below both.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kxl.errors import KxlError
from kxl.hashing import sha256_file


@dataclass(frozen=True)
class Released:
    """A released checkpoint on the HF hub, pinned by revision (and sha256 when known)."""

    repo_id: str
    filename: str
    revision: str
    sha256: str | None = None
    # the training step of a released intermediate LoKr (e.g. lyco-step00013600): the rebuilt
    # run keeps a checkpoint there (train.checkpoint_steps) and compares it (step_pairs)
    step: int | None = None


def is_local(spec: str, released: dict[str, Any]) -> bool:
    """Whether an operand names a local file (a Snakemake input), not a released name or hf://."""
    return spec not in released and not spec.startswith("hf://")


def parse_hf(spec: str) -> Released:
    """`hf://owner/repo/path/in/repo@revision` -> Released (revision required: pin it)."""
    body, at, revision = spec.removeprefix("hf://").rpartition("@")
    parts = body.split("/")
    if not at or len(parts) < 3 or not revision:
        raise KxlError(f"{spec!r}: expected hf://<owner>/<repo>/<file>@<revision>")
    return Released("/".join(parts[:2]), "/".join(parts[2:]), revision)


def release(released: dict[str, Any], name: str) -> Released | None:
    """The configured entry `audit.released.<name>` (None when there is none)."""
    from kxl.config import from_dict

    raw = released.get(name)
    return None if raw is None else from_dict(Released, raw, f"audit.released.{name}")


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


def resolve(spec: str, released: dict[str, Any], offline: bool) -> Path:
    """hf://... or a released name (`released`: config audit.released) from the HF cache, else
    a local path that must exist."""
    if spec.startswith("hf://"):
        return fetch_released(parse_hf(spec), offline)
    rel = release(released, spec)
    if rel is not None:
        return fetch_released(rel, offline)
    path = Path(spec)
    if not path.exists():
        raise KxlError(f"{spec}: no such file or directory, and not a released name "
                       f"({sorted(released)}) or hf://<owner>/<repo>/<file>@<revision>")
    return path


def released_json(text: str) -> dict[str, Any]:
    """A `--released-json` argument: config audit.released entries (name -> repo_id, ...)."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KxlError(f"--released-json: invalid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(data, dict):
        raise KxlError(f"--released-json: expected a mapping name -> entry, got "
                       f"{type(data).__name__}")
    return data


def add_offline_arg(p: argparse.ArgumentParser) -> None:
    """`--offline`: released files only from the HF cache; default from $HF_HUB_OFFLINE."""
    p.add_argument("--offline", action="store_true",
                   default=os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"),
                   help="released files only from the HF cache (default: $HF_HUB_OFFLINE)")
