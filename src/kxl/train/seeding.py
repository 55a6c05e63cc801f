"""All randomness of training: generators derived from explicit keys (the flags: kxl.determinism).

No global RNG is used for training noise: every sample (`per_sample`) or micro-batch (`per_rank`,
`shared`) gets its own torch.Generator seeded from an explicit key, so resume needs only the plan
position. `per_sample` keys a sample by its place in the optimizer step (micro-batch sequence
index i = micro * W + rank of the plan, slot), which every layout with the same W*A gives it: a
run can continue on another (W, A) and compute the same losses.
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


def sample_generators(
    seed: int, step: int, position: int, n: int, device: Any
) -> list[Any]:
    """One generator per sample of a micro-batch: micro-batch `position` (micro * W + rank of
    the plan: its place in the optimizer step), slots 0..n-1."""
    import torch

    out = []
    for slot in range(n):
        g = torch.Generator(device=device)
        g.manual_seed(derive_seed(seed, "sample", step, position, slot))
        out.append(g)
    return out


def set_deterministic(seed: int) -> None:
    """Seed the global RNGs (torch seeds itself randomly per process; nothing in training draws
    from it, but its state is checkpointed and must not differ between identical runs) and
    prefer deterministic kernels (warn only: kxl.determinism says why)."""
    import torch

    from kxl.determinism import deterministic_torch

    torch.manual_seed(derive_seed(seed, "global"))
    deterministic_torch(None, "warn")  # threads: the train rule's OMP_NUM_THREADS
