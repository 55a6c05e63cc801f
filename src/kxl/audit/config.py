"""Typed config section of the audit stage (`audit:` in config/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kxl.config import from_dict
from kxl.errors import KxlError


@dataclass(frozen=True)
class Released:
    """A released checkpoint on the HF hub, pinned by revision (and sha256 when known)."""

    repo_id: str
    filename: str
    revision: str
    sha256: str | None = None


@dataclass(frozen=True)
class DiffPair:
    """One `results/audit/diff/<name>.{json,html}` target: paths or released names."""

    a: str
    b: str
    base: str | None = None


@dataclass(frozen=True)
class Tolerance:
    """A tensor pair differs when max|a-b| > atol AND relative L2 > rtol."""

    rtol: float = 1e-6
    atol: float = 0.0
    check_dtype: bool = True


@dataclass(frozen=True)
class AuditConfig:
    tolerance: Tolerance = field(default_factory=Tolerance)
    released: dict[str, Any] = field(default_factory=dict)
    diffs: dict[str, Any] = field(default_factory=dict)

    def release(self, name: str) -> Released | None:
        raw = self.released.get(name)
        return None if raw is None else from_dict(Released, raw, f"audit.released.{name}")

    def pair(self, name: str) -> DiffPair:
        if name not in self.diffs:
            raise KxlError(f"config audit.diffs has no entry {name!r}; "
                           f"known: {sorted(self.diffs)}")
        return from_dict(DiffPair, self.diffs[name], f"audit.diffs.{name}")
