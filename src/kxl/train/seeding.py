"""All randomness of training: generators derived from explicit keys, and determinism flags.

No global RNG is used for training noise: every micro-batch gets its own torch.Generator seeded
from (run seed, purpose, step, rank, micro), so resume needs only the plan position.
"""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(*key: int | str) -> int:
    """A 63-bit seed from a tuple key (stable across machines and Python versions)."""
    text = "/".join(str(k) for k in key).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def micro_generator(seed: int, step: int, rank: int, micro: int, shared: bool, device: Any) -> Any:
    """The generator for one micro-batch; `shared` drops the rank (the sd-scripts behaviour)."""
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, "noise", step, -1 if shared else rank, micro))
    return g


def set_deterministic(seed: int) -> None:
    """Seed the global RNGs (torch seeds itself randomly per process; nothing in training draws
    from it, but its state is checkpointed and must not differ between identical runs) and
    prefer deterministic kernels."""
    import torch

    torch.manual_seed(derive_seed(seed, "global"))

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
