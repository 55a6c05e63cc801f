"""Restoring torch's process-wide state after code that sets it (CLIs call deterministic_torch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_state() -> Iterator[None]:
    """Restore torch's thread count and determinism flag: other stages' tests share the process."""
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
