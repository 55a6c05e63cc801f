"""Learning rate as a pure function of the optimizer step (resume needs only the step)."""

from __future__ import annotations

from typing import Literal


def warmup_factor(
    step: int, warmup_steps: int, world_size: int, counting: Literal["per_process", "global"]
) -> float:
    """LR multiplier applied at optimizer step `step` (0-based) for constant-with-warmup.

    The warmup is transformers' get_constant_schedule_with_warmup: count / warmup below warmup,
    1 after, where `count` is how often the scheduler was stepped before this update. sd-scripts
    0.8.7 steps it once per process per optimizer step (accelerate), so count = step * world_size:
    1000 warmup steps ended after 250 optimizer steps on 4 GPUs (`per_process`); `global` counts
    optimizer steps.
    """
    count = step * world_size if counting == "per_process" else step
    if count < warmup_steps:
        return count / max(1, warmup_steps)
    return 1.0


class LRSchedule:
    """Sets each group's lr from its base lr and the step; state is the step alone."""

    def __init__(
        self,
        optimizer: object,
        base_lrs: list[float],
        warmup_steps: int,
        world_size: int,
        counting: Literal["per_process", "global"],
    ) -> None:
        self.optimizer = optimizer
        self.base_lrs = list(base_lrs)
        self.warmup_steps, self.world_size, self.counting = warmup_steps, world_size, counting
        self.step = 0

    def apply(self) -> list[float]:
        f = warmup_factor(self.step, self.warmup_steps, self.world_size, self.counting)
        lrs = [base * f for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):  # type: ignore[attr-defined]
            group["lr"] = lr
        return lrs

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
