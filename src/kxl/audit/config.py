"""Typed config section of the audit stage (`audit:` in config/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.hub import Released, is_local, release

# The rebuilt run's LoKr at a checkpoint step (rule step_lokr exports it from the checkpoint).
STEP_LOKR = "results/train/steps/step-{step:08d}.safetensors"
# A crash scenario's files (rules/crash.smk): its emulated plan, training output dir (checkpoints,
# metrics.csv) and LoKr at its checkpoint steps; its series is `crash-<name>`.
PLAN = "results/plan/plan.parquet"
TRAIN_METRICS = "results/train/metrics.csv"
CRASH_DIR = "results/audit/crash/{name}"
CRASH_PLAN = CRASH_DIR + "/plan.parquet"
CRASH_STEP_LOKR = CRASH_DIR + "/steps/step-{step:08d}.safetensors"
CRASH_SERIES = "crash-"


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
    files = series_files(name, cfg.series_config(name, train_steps), released, train_steps)
    sources = crash_sources(cfg.crash, name) or {}  # a crash series names the data too
    extra = {f for kind in sources.values() for f in kind.values()}
    return sorted({f for side in files.values() for f in side.values() if is_local(f, released)}
                  | extra)


@dataclass(frozen=True)
class CrashScenario:
    """One `audit.crash.<name>`: the exact run crashed after its checkpoint `resume_step` and was
    resumed as sd-scripts 0.8.7 resumed: the data order restarted (`reading`, kxl.audit.crash)
    and the warmup restarted at the resume or continued (`warmup`, kxl.train.trainer
    Trainer.continue_run). `window`: steps per window of damage.json."""

    resume_step: int
    reading: Literal["restart-epoch", "restart-run"] = "restart-epoch"
    warmup: Literal["restart", "continue"] = "restart"
    window: int = 1000


def crash_scenario(crash: dict[str, Any], name: str, train_steps: list[int]) -> CrashScenario:
    """The scenario, checked against the exact run's kept checkpoints: it continues checkpoint
    resume_step, and a later kept step is what the comparison sees it diverge at."""
    if name not in crash:
        raise KxlError(f"config audit.crash has no entry {name!r}; known: {sorted(crash)}")
    sc = from_dict(CrashScenario, crash[name], f"audit.crash.{name}")
    if sc.resume_step not in train_steps:
        raise KxlError(f"config audit.crash.{name}.resume_step: {sc.resume_step} is not in "
                       f"train.checkpoint_steps {sorted(train_steps)} (the exact run keeps only "
                       "those checkpoints to continue from)")
    if not any(s > sc.resume_step for s in train_steps):
        raise KxlError(f"config audit.crash.{name}.resume_step: {sc.resume_step} has no later "
                       f"step in train.checkpoint_steps {sorted(train_steps)} to compare at")
    return sc


def crash_series(crash: dict[str, Any], train_steps: list[int]) -> dict[str, dict[str, Any]]:
    """`crash-<name>` for each scenario: the rebuilt run (a) and the scenario (b) at the kept
    checkpoint steps from its resume step on (the scenario writes its own checkpoint there)."""
    out = {}
    for name in sorted(crash):
        k = crash_scenario(crash, name, train_steps).resume_step
        out[CRASH_SERIES + name] = {"a": "rebuilt", "b": [
            {"step": s, "file": CRASH_STEP_LOKR.format(name=name, step=s)}
            for s in sorted(train_steps) if s >= k]}
    return out


def crash_sources(crash: dict[str, Any], series_name: str) -> dict[str, dict[str, str]] | None:
    """What a crash scenario's series names its divergence from: `plans` and `metrics` of the
    exact run (a) and the scenario (b); None for any other series."""
    name = series_name.removeprefix(CRASH_SERIES)
    if not series_name.startswith(CRASH_SERIES) or name not in crash:
        return None
    return {"plans": {"a": PLAN, "b": CRASH_PLAN.format(name=name)},
            "metrics": {"a": TRAIN_METRICS, "b": CRASH_DIR.format(name=name) + "/metrics.csv"}}


@dataclass(frozen=True)
class AuditConfig:
    tolerance: Tolerance = field(default_factory=Tolerance)
    released: dict[str, Any] = field(default_factory=dict)
    diffs: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    crash: dict[str, Any] = field(default_factory=dict)

    def all_series(self, train_steps: list[int]) -> dict[str, Any]:
        """audit.series plus one `crash-<name>` series per crash scenario."""
        generated = crash_series(self.crash, train_steps)
        clash = sorted(set(self.series) & set(generated))
        if clash:
            raise KxlError(f"config audit.series: {clash[0]!r} is the name of a crash "
                           "scenario's series (crash-<name>); rename the series")
        return {**self.series, **generated}

    def series_config(self, name: str, train_steps: list[int] | None = None) -> Series:
        """audit.series.<name>, or with `train_steps` a crash scenario's `crash-<name>` too."""
        raw = self.series.get(name)
        if raw is None and train_steps is not None:
            raw = self.all_series(train_steps).get(name)
        if raw is None:
            known = sorted(self.series) + [CRASH_SERIES + c for c in sorted(self.crash)]
            raise KxlError(f"config audit.series has no entry {name!r}; known: {known}")
        return from_dict(Series, raw, f"audit.series.{name}")

    def release(self, name: str) -> Released | None:
        return release(self.released, name)

    def pair(self, name: str) -> DiffPair:
        pairs = all_pairs({"diffs": self.diffs, "released": self.released})
        if name not in pairs:
            raise KxlError(f"config audit.diffs has no entry {name!r}; known: {sorted(pairs)}")
        return from_dict(DiffPair, pairs[name], f"audit.diffs.{name}")
