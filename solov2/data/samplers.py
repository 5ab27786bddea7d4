"""Samplers: infinite shuffled training stream sharded over ranks, exact-once inference sharding."""

from __future__ import annotations

import itertools
from typing import Iterator, List, Optional

import torch
from torch.utils.data.sampler import Sampler

from ..utils import comm


class TrainingSampler(Sampler):
    """An infinite stream of dataset indices; every rank takes every world_size-th index of one shared stream."""

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        if size <= 0:
            raise ValueError(f"TrainingSampler needs a non-empty dataset, got size {size}")
        self._size = size
        self._shuffle = shuffle
        # All ranks must agree on the seed, or their shards would overlap.
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank() if rank is None else rank
        self._world_size = comm.get_world_size() if world_size is None else world_size

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=g).tolist()
            else:
                yield from range(self._size)


class InferenceSampler(Sampler):
    """Contiguous shards that together visit every index exactly once."""

    def __init__(self, size: int, rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        self._size = size
        self._rank = comm.get_rank() if rank is None else rank
        self._world_size = comm.get_world_size() if world_size is None else world_size
        self._local_indices = self._get_local_indices(size, self._world_size, self._rank)

    @staticmethod
    def _get_local_indices(total: int, world_size: int, rank: int) -> List[int]:
        shard, left = divmod(total, world_size)
        sizes = [shard + int(r < left) for r in range(world_size)]
        begin = sum(sizes[:rank])
        return list(range(begin, begin + sizes[rank]))

    def __iter__(self) -> Iterator[int]:
        yield from self._local_indices

    def __len__(self) -> int:
        return len(self._local_indices)
