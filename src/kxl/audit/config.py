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
    # the training step of a released intermediate LoKr (e.g. lyco-step00013600): the rebuilt
    # run keeps a checkpoint there (train.checkpoint_steps) and compares it (step_pairs)
    step: int | None = None


# The rebuilt run's LoKr at a checkpoint step (rule step_lokr exports it from the checkpoint).
STEP_LOKR = "results/train/steps/step-{step:08d}.safetensors"


def step_pairs(released: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One diff per released file with a `step`: `released-step-<step>` compares the rebuilt
    run's LoKr at that step with the released one."""
    return {f"released-step-{raw['step']:08d}": {"a": STEP_LOKR.format(step=raw["step"]),
                                                 "b": name}
            for name, raw in sorted(released.items()) if raw.get("step") is not None}


def all_pairs(audit: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The configured `audit.diffs` plus the released-step comparisons (the diff targets)."""
    diffs = dict(audit.get("diffs") or {})
    steps = step_pairs(audit.get("released") or {})
    clash = sorted(set(diffs) & set(steps))
    if clash:
        raise KxlError(f"config audit.diffs: {clash[0]!r} is the name of a released-step "
                       "comparison (released-step-<step>); rename the diff")
    return {**diffs, **steps}


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
        pairs = all_pairs({"diffs": self.diffs, "released": self.released})
        if name not in pairs:
            raise KxlError(f"config audit.diffs has no entry {name!r}; known: {sorted(pairs)}")
        return from_dict(DiffPair, pairs[name], f"audit.diffs.{name}")
