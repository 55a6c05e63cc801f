"""Per-tensor comparison numbers, computed in float64 over bounded chunks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_CHUNK = 1 << 22  # elements per float64 chunk: bounded memory for any tensor size


@dataclass(frozen=True)
class PairStats:
    max_abs: float
    diff_l2: float
    norm_a: float
    norm_b: float
    dot: float

    @property
    def rel_l2(self) -> float:
        """||a - b|| / max(||a||, ||b||); 0 when both are zero."""
        denom = max(self.norm_a, self.norm_b)
        return 0.0 if self.diff_l2 == 0 else (math.inf if denom == 0 else self.diff_l2 / denom)

    @property
    def cosine(self) -> float:
        """cos(a, b); 1 when both are zero, 0 when exactly one is."""
        if self.norm_a == 0 or self.norm_b == 0:
            return 1.0 if self.norm_a == self.norm_b else 0.0
        return max(-1.0, min(1.0, self.dot / (self.norm_a * self.norm_b)))


def pair_stats(a: torch.Tensor, b: torch.Tensor) -> PairStats:
    """Compare two same-shape tensors (any float dtypes) without a float64 copy of either."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    mx = d2 = na = nb = dot = 0.0
    for i in range(0, fa.numel(), _CHUNK):
        x, y = fa[i:i + _CHUNK].double(), fb[i:i + _CHUNK].double()
        d = x - y
        mx = max(mx, float(d.abs().max()))
        d2 += float(d @ d)
        na += float(x @ x)
        nb += float(y @ y)
        dot += float(x @ y)
    return PairStats(mx, math.sqrt(d2), math.sqrt(na), math.sqrt(nb), dot)
