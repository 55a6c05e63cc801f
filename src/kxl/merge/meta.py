"""The safetensors metadata of a merged checkpoint: what made it, hashed."""

from __future__ import annotations

import json
import os
from typing import Any

from kxl import __version__
from kxl.hashing import sha256_bytes
from kxl.provenance import artifact_hash
from kxl.safetensors_header import read_header


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def merge_metadata(base: str | os.PathLike[str], lokr: str | os.PathLike[str],
                   config: dict[str, Any]) -> dict[str, str]:
    """kxl version, merge config and its sha256, input sha256s, and the LoKr's own metadata
    (which carries the training config) - all strings, as safetensors requires."""
    lokr_meta = read_header(lokr).metadata
    return {
        "kxl.stage": "merge",
        "kxl.version": __version__,
        "kxl.merge_config": canonical_json(config),
        "kxl.config_sha256": sha256_bytes(canonical_json(config).encode()),
        "kxl.base_sha256": artifact_hash(base),
        "kxl.lokr_sha256": artifact_hash(lokr),
        "kxl.lokr_metadata": canonical_json(lokr_meta),
    }
