"""All distributed code of kxl. Nothing else reads RANK / WORLD_SIZE.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; without them the run is a
single process (W = 1) through the same code. Backend: nccl on CUDA, gloo on CPU. Gradients are
summed with one all-reduce per optimizer step (data parallel without the DDP wrapper, whose
bucketing would need the adapter as the wrapped forward); each rank already divided its loss by
the micro-batches of the whole step, so the sum is the step's mean gradient.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: Any

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(want_cuda: bool) -> World:
    """Join the process group torchrun describes (or none), pick the device."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = want_cuda and torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=size)
    return World(rank, size, local, device)


def all_reduce_sum_(tensors: list[Any], world: World) -> None:
    """In-place sum over ranks of a list of tensors (flattened into one buffer)."""
    if world.size == 1 or not tensors:
        return
    import torch
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def all_reduce_scalar(x: float, world: World) -> float:
    if world.size == 1:
        return x
    import torch
    import torch.distributed as dist

    t = torch.tensor([x], dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return float(t.item())


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def shutdown(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
