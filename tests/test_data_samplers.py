"""Samplers: disjoint training shards over ranks, exact-once inference coverage."""

import itertools

from solov2.data import InferenceSampler, TrainingSampler


def test_training_shards_are_disjoint_and_cover_each_epoch():
    size, world = 10, 2
    streams = [list(itertools.islice(iter(TrainingSampler(size, seed=3, rank=r, world_size=world)), 5))
               for r in range(world)]
    assert set(streams[0]).isdisjoint(streams[1])
    assert sorted(streams[0] + streams[1]) == list(range(size))  # the first epoch, split between ranks
    again = list(itertools.islice(iter(TrainingSampler(size, seed=3, rank=0, world_size=world)), 5))
    assert again == streams[0]  # seeded
    other = list(itertools.islice(iter(TrainingSampler(size, seed=4, rank=0, world_size=world)), 5))
    assert other != streams[0]
    long = list(itertools.islice(iter(TrainingSampler(3, seed=0, rank=0, world_size=1)), 30))
    assert sorted(long) == sorted(list(range(3)) * 10)  # infinite, every epoch a permutation


def test_inference_sampler_visits_every_index_once():
    for size, world in [(10, 3), (2, 4), (7, 1), (0, 2)]:
        seen = [i for r in range(world) for i in InferenceSampler(size, rank=r, world_size=world)]
        assert sorted(seen) == list(range(size))
        assert len(seen) == len(set(seen))
