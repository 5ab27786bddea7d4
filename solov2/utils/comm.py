"""Helpers for torch.distributed that also work in a single, non-distributed process."""

from __future__ import annotations

import functools
from typing import Any, List, Optional

import numpy as np
import torch
import torch.distributed as dist

# The process group of the processes on this machine; set by engine.launch.
_LOCAL_PROCESS_GROUP: Optional[dist.ProcessGroup] = None


def is_dist() -> bool:
    """Whether torch.distributed is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the job (1 when not distributed)."""
    return dist.get_world_size() if is_dist() else 1


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_dist() else 0


def get_local_rank() -> int:
    """Rank of this process on its machine."""
    if not is_dist() or _LOCAL_PROCESS_GROUP is None:
        return 0
    return dist.get_rank(group=_LOCAL_PROCESS_GROUP)


def get_local_size() -> int:
    """Number of processes on this machine."""
    if not is_dist() or _LOCAL_PROCESS_GROUP is None:
        return 1
    return dist.get_world_size(group=_LOCAL_PROCESS_GROUP)


def is_main_process() -> bool:
    """True on global rank 0: the only process that writes files."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes (no-op when not distributed)."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@functools.lru_cache()
def _get_global_gloo_group() -> dist.ProcessGroup:
    # Object collectives go through gloo so they never need GPU memory.
    if dist.get_backend() == "nccl":
        return dist.new_group(backend="gloo")
    return dist.group.WORLD


def all_gather(data: Any, group: Optional[dist.ProcessGroup] = None) -> List[Any]:
    """Gather any picklable object from every rank; returns a list indexed by rank."""
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_global_gloo_group()
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return [data]
    output: List[Any] = [None for _ in range(world_size)]
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group: Optional[dist.ProcessGroup] = None) -> List[Any]:
    """Gather any picklable object to rank `dst`; other ranks get []."""
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_global_gloo_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    if dist.get_rank(group=group) == dst:
        output: List[Any] = [None for _ in range(world_size)]
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def shared_random_seed() -> int:
    """A random int that every rank agrees on (rank 0's)."""
    ints = np.random.randint(2**31)
    return int(all_gather(ints)[0])
