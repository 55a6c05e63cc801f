"""Provenance: every artifact's record (kxl.provenance) in one table, and `kxl verify`'s result.

Nothing is re-hashed here (that is `kxl verify`'s job, hours on a full run's images): an input
is shown as consistent when the sha256 its consumer recorded equals the one in the input's own
record, which catches an input remade after its consumer without reading a byte of it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kxl.provenance import RECORD_DIR
from kxl.report.inputs import Missing, read_json

# Stage folders hold their records at results/.prov, results/<stage>/.prov and
# results/eval/ccip/.prov; never walk deeper (images/files holds a full run's 5.2M files).
_RECORD_GLOBS = (f"{RECORD_DIR}/*.json", f"*/{RECORD_DIR}/*.json", f"*/*/{RECORD_DIR}/*.json")


@dataclass(frozen=True)
class Input:
    path: str
    sha256: str
    now: str  # "same" | "changed" (its own record has another sha256) | "no record"


@dataclass(frozen=True)
class Record:
    artifact: str
    stage: str
    sha256: str
    size: int | None
    inputs: list[Input]
    kxl_version: str
    git_commit: str | None
    packages: dict[str, str | None]
    environment: dict[str, Any]
    mtime: float  # of the record file


@dataclass(frozen=True)
class Provenance:
    records: list[Record]
    verify: dict[str, Any] | Missing
    stale_verify: list[str]  # records written after verify.json: verify did not see them
    missing: list[Missing] = field(default_factory=list)


def find_records(results: Path) -> list[Path]:
    return sorted({p for g in _RECORD_GLOBS for p in results.glob(g)})


def _norm(path: str) -> str:
    return os.path.normpath(path)


def link_inputs(raw: list[dict[str, Any]]) -> list[Record]:
    """Records with each input judged against the input's own record (by normalised path)."""
    own = {_norm(r["artifact"]): r["sha256"] for r in raw}
    out = []
    for r in raw:
        inputs = []
        for path, sha in sorted((r.get("inputs") or {}).items()):
            mine = own.get(_norm(path))
            inputs.append(Input(path, sha, "no record" if mine is None else
                                "same" if mine == sha else "changed"))
        out.append(Record(r["artifact"], r.get("stage", "?"), r["sha256"], r.get("size"),
                          inputs, str(r.get("kxl_version")), r.get("git_commit"),
                          r.get("packages") or {}, r.get("environment") or {}, r["_mtime"]))
    return sorted(out, key=lambda rec: rec.artifact)


def package_table(records: list[Record]) -> dict[str, dict[str, list[str]]]:
    """package -> version -> the artifacts made with it (one version each, normally)."""
    out: dict[str, dict[str, list[str]]] = {}
    for rec in records:
        for pkg, ver in rec.packages.items():
            out.setdefault(pkg, {}).setdefault(str(ver) if ver else "-", []).append(rec.artifact)
    return dict(sorted(out.items()))


def read_provenance(results: Path, verify_json: Path) -> Provenance:
    missing: list[Missing] = []
    raw = []
    for path in find_records(results):
        try:
            data = json.loads(path.read_text())
            data["_mtime"] = path.stat().st_mtime
            _ = data["artifact"], data["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            missing.append(Missing(str(path), f"unreadable provenance record "
                                   f"({exc.__class__.__name__})"))
            continue
        raw.append(data)
    if not raw:
        missing.append(Missing(str(results), "no provenance records"))
    records = link_inputs(raw)
    verify = read_json(verify_json)
    stale = []
    if isinstance(verify, Missing):
        verify = Missing(verify.path, f"{verify.why}: the page cannot say whether the artifacts "
                         f"still match their records; run `kxl verify {results} --json "
                         f"{verify_json}`")
        missing.append(verify)
    else:
        made = verify_json.stat().st_mtime
        # the report's own record is always newer than the verify run it shows
        stale = [r.artifact for r in records if r.mtime > made and r.stage != "report"]
    return Provenance(records, verify, stale, missing)
