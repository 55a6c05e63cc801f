"""The one place that sets torch's process-wide determinism flags.

The flags are process-wide, so only entry points call `deterministic_torch` (the CLIs, and the
trainer's setup through `kxl.train.seeding.set_deterministic`); library code never does. Three
levels, each where it is for a reason:

- "strict" (synth-base, the latents cache): their outputs are compared byte for byte between
  runs, so a kernel without a deterministic implementation is an error, not a silent drift. On
  CUDA the deterministic cuBLAS matmuls need a fixed workspace, which must be in the environment
  before cuBLAS starts.
- "warn" (training): the same preference, but a kernel without a deterministic version (on a
  GPU: some backward kernels, or cuBLAS without a fixed workspace, which the train rule does not
  set) must not stop a days-long run; torch warns and carries on. Training's bit-exact resume is
  tested on CPU.
- "default" (eval's sampling and prompt probe): torch's own kernel choice; eval results are
  compared statistically, not byte for byte (README: Determinism), so only the thread count is
  fixed.

A fixed thread count matters on CPU in every level: reductions are split by thread, so another
count sums floats in another order.
"""

from __future__ import annotations

import os
from typing import Literal

Kernels = Literal["strict", "warn", "default"]


def deterministic_torch(threads: int | None, kernels: Kernels = "strict") -> None:
    """Fix torch's CPU thread count (unless None: left to OMP_NUM_THREADS) and its kernel choice."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    if kernels == "default":
        return
    if kernels == "strict":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=kernels == "warn")
    torch.backends.cudnn.benchmark = False
