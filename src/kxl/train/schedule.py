"""Learning rate as a pure function of the optimizer step (resume needs only the step)."""

from __future__ import annotations

from typing import Literal


def warmup_factor(
    step: int, warmup_steps: int, world_size: int, counting: Literal["per_process", "global"],
    since: int = 0,
) -> float:
    """LR multiplier applied at optimizer step `step` (0-based) for constant-with-warmup.

    The warmup is transformers' get_constant_schedule_with_warmup: count / warmup below warmup,
    1 after, where `count` is how often the scheduler was stepped before this update. sd-scripts
    0.8.7 steps it once per process per optimizer step (accelerate), so count = step * world_size:
    1000 warmup steps ended after 250 optimizer steps on 4 GPUs (`per_process`); `global` counts
    optimizer steps.

    `since`: the step the scheduler was built at (0; a crash scenario's warmup restarted at its
    resume step, kxl.audit.crash): the count starts there.
    """
    count = (step - since) * world_size if counting == "per_process" else step - since
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
        self.warmup_from = 0  # the step the warmup counts from (a restarted warmup's resume)

    def apply(self) -> list[float]:
        f = warmup_factor(self.step, self.warmup_steps, self.world_size, self.counting,
                          self.warmup_from)
        lrs = [base * f for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):  # type: ignore[attr-defined]
            group["lr"] = lr
        return lrs

    def state_dict(self) -> dict[str, int]:
        # warmup_from only when set: checkpoints of runs whose warmup never restarted keep their
        # bytes (and resume from older ones reads 0)
        return {"step": self.step} | ({"warmup_from": self.warmup_from} if self.warmup_from else {})

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])
        self.warmup_from = int(state.get("warmup_from", 0))
