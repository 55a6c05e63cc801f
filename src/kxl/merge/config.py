"""Typed config section of the merge stage (`merge:` in config/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MergeConfig:
    # Strength of the LoKr delta in the merged file (1.0 = the trained adapter as it ran).
    multiplier: float = 1.0
