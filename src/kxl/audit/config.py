"""Typed config section of the audit stage (`audit:` in config/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.hub import Released, is_local, release

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
class SeriesPoint:
    """One checkpoint of a listed series: its step and a local path, released name or hf://."""

    step: int
    file: str


Side = Literal["released", "rebuilt"] | list[SeriesPoint]


@dataclass(frozen=True)
class Series:
    """One `results/audit/series/<name>.{json,html}` target: series a (and b side by side).

    `released`: the audit.released entries with a `step`; `rebuilt`: this run's LoKr at each of
    train.checkpoint_steps (STEP_LOKR); or a list of {step, file}. With b, the common steps."""

    a: Side
    b: Side | None = None
    jump: float = 3.0  # a change above jump x the median of the block's earlier changes is flagged


def side_files(side: Side, released: dict[str, Any], train_steps: list[int]) -> dict[int, str]:
    """step -> operand (local path, released name or hf://) of one side of a series."""
    if side == "released":
        return {raw["step"]: name for name, raw in released.items() if raw.get("step") is not None}
    if side == "rebuilt":
        return {s: STEP_LOKR.format(step=s) for s in train_steps}
    return {p.step: p.file for p in side}


def _label(side: Side) -> str:
    return side if isinstance(side, str) else "list"


def series_files(name: str, series: Series, released: dict[str, Any],
                 train_steps: list[int]) -> dict[str, dict[int, str]]:
    """{'a': step -> operand[, 'b': ...]} over the compared steps (with b: the common ones);
    fewer than 2 is a one-line error naming where the steps come from."""
    sides = {"a": series.a} if series.b is None else {"a": series.a, "b": series.b}
    files = {k: side_files(v, released, train_steps) for k, v in sides.items()}
    steps = sorted(set.intersection(*(set(f) for f in files.values())))
    if len(steps) < 2:
        where = {"released": "audit.released entries with a step",
                 "rebuilt": "train.checkpoint_steps", "list": "listed"}
        have = "; ".join(f"{k} ({_label(v)}, {where[_label(v)]}): {sorted(files[k])}"
                         for k, v in sides.items())
        raise KxlError(f"audit.series.{name}: a series needs at least 2 checkpoint steps"
                       f"{' in common' if len(sides) > 1 else ''}; {have}")
    return {k: {s: f[s] for s in steps} for k, f in files.items()}


def series_inputs(audit: dict[str, Any], train_steps: list[int], name: str) -> list[str]:
    """The local files (not released names, not hf://) that series `name` reads: the rebuilt
    run's STEP_LOKR files and listed paths (Snakemake builds them first)."""
    cfg = from_dict(AuditConfig, audit, "audit")
    released = cfg.released
    files = series_files(name, cfg.series_config(name), released, train_steps)
    return sorted({f for side in files.values() for f in side.values() if is_local(f, released)})


@dataclass(frozen=True)
class AuditConfig:
    tolerance: Tolerance = field(default_factory=Tolerance)
    released: dict[str, Any] = field(default_factory=dict)
    diffs: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)

    def series_config(self, name: str) -> Series:
        if name not in self.series:
            raise KxlError(f"config audit.series has no entry {name!r}; known: "
                           f"{sorted(self.series)}")
        return from_dict(Series, self.series[name], f"audit.series.{name}")

    def release(self, name: str) -> Released | None:
        return release(self.released, name)

    def pair(self, name: str) -> DiffPair:
        pairs = all_pairs({"diffs": self.diffs, "released": self.released})
        if name not in pairs:
            raise KxlError(f"config audit.diffs has no entry {name!r}; known: {sorted(pairs)}")
        return from_dict(DiffPair, pairs[name], f"audit.diffs.{name}")
