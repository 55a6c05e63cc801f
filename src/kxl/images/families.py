"""Shard families: which tar files may hold an id, and how the shards folder records them.

A family is a set of tar files of one kind (`images.huggingface.families`): the file serving
id is `pattern.format(shard=id % modulus)`. Families are listed in precedence order: when an
id has a usable member in files of several families, the file of the last family wins (an
update shard replaces the original). `kxl fetch-images` links family F's files into
`shards/F/` under their base names and writes `shards/families.json` (this section), so
`kxl extract-images` knows the layout without the config. A shards folder without that index
(the synthetic one) is the single-family layout: every top-level `data-NNNN.tar` serves
shard NNNN % 1000, and files are in name order.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from kxl.config import from_dict, to_dict
from kxl.errors import KxlError
from kxl.images.config import HuggingfaceImages, ShardFamily

INDEX = "families.json"
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
BASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.tar$")
MAX_MODULUS = 100_000


def check_families(families: list[ShardFamily], where: str) -> None:
    """One-line KxlError naming the offending key unless every family is well formed: a
    distinct folder name, 1 <= modulus <= MAX_MODULUS, and a pattern that gives, for each
    shard, a distinct relative repo path with a distinct, plain `*.tar` base name."""
    if not families:
        raise KxlError(f"{where}: no shard family; list at least one")
    names: set[str] = set()
    owner: dict[str, str] = {}  # repo path -> the key of the family giving it
    for i, fam in enumerate(families):
        key = f"{where}[{i}]"
        if not NAME.match(fam.name):
            raise KxlError(f"{key}.name: {fam.name!r} must match {NAME.pattern} (a folder name)")
        if fam.name in names:
            raise KxlError(f"{key}.name: {fam.name!r} is used by an earlier family")
        names.add(fam.name)
        if not 1 <= fam.modulus <= MAX_MODULUS:
            raise KxlError(f"{key}.modulus: {fam.modulus} is not in 1..{MAX_MODULUS}")
        _check_fields(fam.pattern, f"{key}.pattern")
        bases: dict[str, int] = {}
        for shard in range(fam.modulus):
            path = _format(fam, shard, f"{key}.pattern")
            base = path.rsplit("/", 1)[-1]
            if base in bases:
                raise KxlError(
                    f"{key}.pattern: {fam.pattern!r} gives the file name {base!r} for shards "
                    f"{bases[base]} and {shard}; each shard needs its own file"
                )
            bases[base] = shard
            if path in owner:
                raise KxlError(f"{key}.pattern: {path!r} is already a file of {owner[path]}")
            owner[path] = key


def _check_fields(pattern: str, key: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None]
    except ValueError as exc:
        raise KxlError(f"{key}: {pattern!r} is not a format string ({exc})") from exc
    odd = sorted({f for f in fields if f != "shard"})
    if odd:
        raise KxlError(f"{key}: {pattern!r} uses field(s) {odd}; only {{shard}} is allowed")


def _format(fam: ShardFamily, shard: int, key: str) -> str:
    try:
        path = fam.remote(shard)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise KxlError(
            f"{key}: {fam.pattern!r} cannot be formatted with shard={shard} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or not BASE_NAME.match(parts[-1]):
        raise KxlError(
            f"{key}: {fam.pattern!r} gives {path!r}; it must be a relative repo path without "
            f"'.', '..' or empty parts whose file name matches {BASE_NAME.pattern}"
        )
    return path


def write_index(out_dir: Path, cfg: HuggingfaceImages, commit: str = "") -> Path:
    """`out_dir/families.json`: the section the shards were fetched with, and the commit its
    revision resolved to."""
    path = out_dir / INDEX
    path.write_text(json.dumps({**to_dict(cfg), "commit": commit}, indent=1, sort_keys=True) + "\n")
    return path


def read_index(shards_dir: Path) -> list[ShardFamily] | None:
    """The families of a fetched shards folder; None for the single-family layout."""
    path = shards_dir / INDEX
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KxlError(f"{path}: unreadable ({exc}); re-run fetch-images") from exc
    families = data.get("families") if isinstance(data, dict) else None
    if not isinstance(families, list):
        raise KxlError(f"{path}: no 'families' list; re-run fetch-images")
    out = [from_dict(ShardFamily, f, f"{path} families[{i}]") for i, f in enumerate(families)]
    check_families(out, f"{path} families")
    return out
