"""Provenance records: what made each artifact, and `kxl verify` to check them later.

Each artifact `dir/name` gets `dir/.prov/name.json` with the sha256 of the output and of each
input, the config section used, the kxl version and git commit, and key package versions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kxl import __version__
from kxl.atomic import write_json
from kxl.hashing import sha256_file

KEY_PACKAGES = (
    "snakemake", "polars", "pyarrow", "numpy", "pillow", "safetensors", "huggingface-hub",
    "torch", "diffusers", "transformers", "lycoris-lora", "bitsandbytes", "dghs-imgutils",
)
RECORD_DIR = ".prov"


def record_path(artifact: str | os.PathLike[str]) -> Path:
    p = Path(artifact)
    return p.parent / RECORD_DIR / f"{p.name}.json"


# Files Snakemake adds to `directory()` outputs after the job: never part of the artifact.
_IGNORED_NAMES = frozenset({".snakemake_timestamp"})


def _is_content_addressed(target: Path) -> bool:
    """HF cache blobs are named by their sha256 (LFS) or git sha1: the name is the hash."""
    name = target.name
    return len(name) in (40, 64) and all(c in "0123456789abcdef" for c in name)


def sha256_tree(root: Path) -> str:
    """Hash of a directory: sorted relative paths and file hashes (records excluded).

    A symlink into a content-addressed store (the HF cache) is hashed by its target's name, so
    terabytes of fetched shards are never re-read just to record provenance.
    """
    import hashlib

    h = hashlib.sha256()
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and RECORD_DIR not in p.parts and p.name not in _IGNORED_NAMES
    )
    for f in files:
        target = f.resolve() if f.is_symlink() else f
        digest = f"blob:{target.name}" if f.is_symlink() and _is_content_addressed(target) else (
            sha256_file(f)
        )
        h.update(f"{f.relative_to(root).as_posix()}\0{digest}\n".encode())
    return h.hexdigest()


def artifact_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of a file or directory, reusing its own record when size and mtime still match."""
    p = Path(path)
    if p.is_dir():
        return sha256_tree(p)
    st = p.stat()
    rec = record_path(p)
    if rec.is_file():
        try:
            data = json.loads(rec.read_text())
            if data.get("size") == st.st_size and data.get("mtime_ns") == st.st_mtime_ns:
                return str(data["sha256"])
        except (json.JSONDecodeError, KeyError):
            pass
    return sha256_file(p)


@functools.cache
def git_commit() -> str | None:
    """The commit of the kxl source tree (suffix '-dirty' when it has local changes)."""
    src = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


@functools.cache
def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    """What an artifact's exact bytes may depend on beyond its inputs and config: the CPU
    kernels torch dispatched to (AVX2 vs AVX512 sum floats in other orders), thread counts
    (reductions split by thread) and the torch build. Torch facts only when the stage loaded
    torch (the data stages do not, and their outputs do not depend on it)."""
    import platform
    import sys

    env: dict[str, Any] = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env.update({
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads(),
            "torch_cuda": torch.version.cuda,
            "cuda_device": (torch.cuda.get_device_name(0)
                            if torch.cuda.is_available() else None),
        })
    return env


def record(
    stage: str,
    outputs: list[str | os.PathLike[str]],
    inputs: list[str | os.PathLike[str]],
    config: dict[str, Any] | None = None,
) -> None:
    """Write a provenance record for every output of one stage run."""
    input_hashes = {str(p): artifact_hash(p) for p in inputs}
    for out in outputs:
        p = Path(out)
        st = p.stat()
        write_json(
            record_path(p),
            {
                "artifact": str(p),
                "kind": "directory" if p.is_dir() else "file",
                "sha256": artifact_hash(p) if p.is_dir() else sha256_file(p),
                "size": None if p.is_dir() else st.st_size,
                "mtime_ns": None if p.is_dir() else st.st_mtime_ns,
                "stage": stage,
                "inputs": input_hashes,
                "config": config or {},
                "kxl_version": __version__,
                "git_commit": git_commit(),
                "packages": package_versions(),
                "environment": environment(),
            },
        )


@dataclass(frozen=True)
class Finding:
    artifact: str
    problem: str

    def __str__(self) -> str:
        return f"{self.artifact}: {self.problem}"


def lineage(artifacts: list[str]) -> tuple[list[Path], list[str]]:
    """The provenance records of `artifacts` and, recursively, of the inputs they were made
    from (sorted), and the named artifacts that have no record."""
    seen: set[str] = set()
    todo, records, unrecorded = list(artifacts), set(), []
    while todo:
        art = todo.pop()
        if art in seen:
            continue
        seen.add(art)
        rec = record_path(art)
        if not rec.is_file():
            unrecorded += [art] if art in artifacts else []
            continue
        records.add(rec)
        try:
            todo += list(json.loads(rec.read_text()).get("inputs", {}))
        except (json.JSONDecodeError, AttributeError):
            continue  # verify names the unreadable record
    return sorted(records), unrecorded


def verify(root: str | os.PathLike[str], of: list[str] | None = None) -> tuple[int, list[Finding]]:
    """Re-hash every recorded artifact under `root` and its inputs; with `of`, only the records
    of those artifacts and of everything they were made from (a fixed set, whatever else other
    jobs are writing meanwhile).

    Returns (number of records checked, findings). A finding is an artifact whose bytes
    changed, that vanished, or one of whose inputs changed or vanished since it was made; a
    file of a folder with its own manifest.json (training checkpoints) that differs from it; or
    a root without records. KxlError when `root` is not a folder.
    """
    from kxl.errors import KxlError

    if not Path(root).is_dir():
        raise KxlError(f"{root}: no such folder (nothing to verify)")
    findings: list[Finding] = []
    if of:
        records, unrecorded = lineage(of)
        findings += [Finding(a, "no provenance record") for a in unrecorded]
    else:
        records = sorted(Path(root).rglob(f"{RECORD_DIR}/*.json"))
    if not records:
        findings.append(Finding(str(root), "no provenance records (not a results folder?)"))
    for rec in records:
        try:
            data = json.loads(rec.read_text())
            art = Path(data["artifact"])
        except (json.JSONDecodeError, KeyError):
            findings.append(Finding(str(rec), "unreadable provenance record"))
            continue
        if not art.exists():
            findings.append(Finding(str(art), "artifact missing"))
            continue
        now = sha256_tree(art) if art.is_dir() else sha256_file(art)
        if now != data["sha256"]:
            old = data["sha256"][:12]
            findings.append(Finding(str(art), f"bytes changed (recorded {old}, now {now[:12]})"))
        for inp, old in data.get("inputs", {}).items():
            if not Path(inp).exists():
                findings.append(Finding(str(art), f"input {inp} missing"))
                continue
            cur = sha256_tree(Path(inp)) if Path(inp).is_dir() else sha256_file(inp)
            if cur != old:
                findings.append(Finding(str(art), f"input {inp} changed since it was made"))
    manifests = sorted(Path(root).rglob(MANIFEST_NAME))
    for man in manifests:
        findings += _manifest_findings(man)
    return len(records) + len(manifests), findings


# Folders that list their own files' sha256 and size (training checkpoints: docs/formats.md).
MANIFEST_NAME = "manifest.json"


def _manifest_findings(man: Path) -> list[Finding]:
    try:
        files = json.loads(man.read_text())["files"]
        entries = [(str(n), str(e["sha256"]), int(e["size"])) for n, e in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [Finding(str(man), "unreadable manifest")]
    out = []
    for name, digest, size in entries:
        f = man.parent / name
        if not f.is_file():
            out.append(Finding(str(f), "listed in its folder's manifest, missing"))
        elif f.stat().st_size != size:
            out.append(Finding(str(f), f"size {f.stat().st_size}, its manifest says {size}"))
        elif (now := sha256_file(f)) != digest:
            out.append(Finding(str(f), f"bytes changed (manifest {digest[:12]}, now {now[:12]})"))
    return out
