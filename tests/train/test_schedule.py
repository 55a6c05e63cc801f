"""Warmup counting: sd-scripts 0.8.7 steps the scheduler once per process (accelerate)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kxl.train.schedule import warmup_factor


def test_epsilon_warmup_ends_after_250_steps_on_4_gpus() -> None:
    assert warmup_factor(249, 1000, 4, "per_process") < 1.0
    assert warmup_factor(250, 1000, 4, "per_process") == 1.0
    assert warmup_factor(999, 1000, 4, "global") < 1.0
    assert warmup_factor(1000, 1000, 4, "global") == 1.0


def test_transformers_constant_with_warmup_values() -> None:
    # get_constant_schedule_with_warmup: lr_lambda(n) = n / max(1, warmup) while n < warmup.
    assert warmup_factor(0, 1000, 4, "per_process") == 0.0
    assert warmup_factor(100, 1000, 4, "per_process") == 0.4
    assert warmup_factor(100, 1000, 4, "global") == 0.1
    assert warmup_factor(5, 0, 1, "global") == 1.0


@given(st.integers(0, 5000), st.integers(0, 2000), st.integers(1, 8))
def test_per_process_is_global_at_step_times_world(step: int, warmup: int, world: int) -> None:
    f = warmup_factor(step, warmup, world, "per_process")
    assert f == warmup_factor(step * world, warmup, 1, "global")
    assert 0.0 <= f <= 1.0
    assert warmup_factor(step + 1, warmup, world, "per_process") >= f


def test_a_restarted_warmup_counts_from_its_step() -> None:
    """A crash scenario's warmup restarted at its resume step 13600 (4 GPUs, per process): 0 at
    13600, 0.4 after 100 steps, full after 250, as at the run's start."""
    assert warmup_factor(13600, 1000, 4, "per_process", since=13600) == 0.0
    assert warmup_factor(13700, 1000, 4, "per_process", since=13600) == 0.4
    assert warmup_factor(13850, 1000, 4, "per_process", since=13600) == 1.0
    assert warmup_factor(13700, 1000, 4, "global", since=13600) == 0.1
