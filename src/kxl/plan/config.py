"""The typed `plan:` config section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kxl.errors import KxlError

PartialBatch = Literal["keep", "drop", "fill"]


@dataclass(frozen=True)
class PlanConfig:
    batch_size: int  # images per micro-batch per rank (sd-scripts --train_batch_size)
    grad_accum: int  # micro-batches per rank per optimizer step
    world_size: int  # data-parallel ranks
    epochs: int = 1
    max_steps: int | None = None  # when set, the plan has exactly this many optimizer steps
    # keep: a bucket's last micro-batch may be short (sd-scripts 0.8.7); drop: it is skipped
    # (counted in summary.json); fill: topped up with images from the start of the same bucket.
    partial_batch: PartialBatch = "keep"

    def __post_init__(self) -> None:
        for key in ("batch_size", "grad_accum", "world_size", "epochs"):
            if getattr(self, key) < 1:
                raise KxlError(f"config plan.{key}: must be >= 1, got {getattr(self, key)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise KxlError(f"config plan.max_steps: must be >= 1 or null, got {self.max_steps}")
