"""fetch-metadata from a local HF cache, offline (the layout huggingface_hub itself uses)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = "KBlueLeaf/danbooru2023-sqlite"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PAYLOAD = b"SQLite format 3\x00" + bytes(range(256)) * 8


@pytest.fixture
def hf_cache(tmp_path: Path) -> Path:
    """datasets--<owner>--<name>/{refs/main, blobs/<sha>, snapshots/<commit>/<file> -> blob}."""
    cache = tmp_path / "hf"
    repo = cache / f"datasets--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    blob = repo / "blobs" / hashlib.sha256(PAYLOAD).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(PAYLOAD)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, snap), snap / "danbooru2023.db")
    return cache


def fetch(cache: Path, out: Path, **cfg: object) -> subprocess.CompletedProcess[str]:
    section = {"repo_id": REPO, "filename": "danbooru2023.db", "revision": "main",
               "sha256": None, **cfg}
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kxl", "fetch-metadata", "--out", str(out),
         "--config-json", json.dumps(section)], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("revision", ["main", COMMIT])
def test_offline_fetch_links_the_cached_file(hf_cache: Path, tmp_path: Path,
                                             revision: str) -> None:
    out = tmp_path / "results" / "metadata" / "danbooru2023.db"
    proc = fetch(hf_cache, out, revision=revision,
                 sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert proc.returncode == 0, proc.stderr
    assert out.is_symlink() and out.read_bytes() == PAYLOAD
    assert COMMIT in os.readlink(out)
    assert (out.parent / ".prov" / "danbooru2023.db.json").is_file()
    # a second fetch replaces the link in place
    assert fetch(hf_cache, out, revision=revision).returncode == 0 and out.is_symlink()


def test_sha256_mismatch_is_one_line_naming_everything(hf_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "danbooru2023.db"
    proc = fetch(hf_cache, out, sha256="0" * 64)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    for part in (REPO, "danbooru2023.db", "revision main", "0" * 64,
                 hashlib.sha256(PAYLOAD).hexdigest()):
        assert part in line
    assert not out.exists() and not out.is_symlink()


def test_unknown_revision_offline_is_a_clear_error(hf_cache: Path, tmp_path: Path) -> None:
    proc = fetch(hf_cache, tmp_path / "x.db", revision="f" * 40)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert REPO in line and "f" * 40 in line and "cannot get danbooru2023.db" in line
