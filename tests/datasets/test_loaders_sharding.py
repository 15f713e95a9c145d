"""Which images each process of a run trains and evaluates on, and in which batches.

The training shards follow the original's rule exactly (torch's DistributedSampler with
its defaults, then a DataLoader that drops the last incomplete batch), written out here
by hand; evaluation shards take every image exactly once over the processes."""
import math

import pytest
import torch
from torch.utils.data import Dataset

from datasets.loaders import eval_loader, train_loader
from engine.schedule import iterations_per_epoch
from utils.distributed import DistContext

WORLD_SIZES = (2, 3)
# Sizes that world sizes 2 and 3 do not divide (7, 11) and one that both do (12).
SIZES = (7, 11, 12)
BATCH = 2


class Indices(Dataset):
    """Sample i is (image, label, name) with i written in the name and the image."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        i = key[0] if isinstance(key, tuple) else key  # training: (index, augmentation seed)
        return torch.full((3, 4, 4), float(i)), torch.zeros(4, 4, dtype=torch.int64), str(i)


def original_train_shard(size, rank, world_size, epoch, shuffle=True):
    """The original's training shard: the permutation of epoch ``epoch`` (torch.randperm
    seeded with seed 0 + epoch), padded with its own first indices to a multiple of the
    world size, then every world_size-th index from ``rank``."""
    if shuffle:
        order = torch.randperm(size, generator=torch.Generator().manual_seed(epoch)).tolist()
    else:
        order = list(range(size))
    total = math.ceil(size / world_size) * world_size
    order = (order * math.ceil(total / size))[:total]
    return order[rank::world_size]


def trained_indices(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [[int(i) for i in names] for _, _, names in loader]


@pytest.mark.parametrize('shuffle', [True, False])
@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('world_size', WORLD_SIZES)
def test_training_shards_are_the_originals(world_size, size, shuffle):
    for rank in range(world_size):
        loader = train_loader(Indices(size), BATCH, DistContext(rank, world_size),
                              shuffle=shuffle)
        for epoch in (0, 1):
            shard = original_train_shard(size, rank, world_size, epoch, shuffle)
            loader.sampler.set_epoch(epoch)
            assert [index for index, _ in loader.sampler] == shard, (rank, epoch)
            # Full batches only: the shard's incomplete last batch is not trained on.
            full = len(shard) // BATCH * BATCH
            expected = [shard[i:i + BATCH] for i in range(0, full, BATCH)]
            assert trained_indices(loader, epoch) == expected, (rank, epoch)


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('world_size', (1,) + WORLD_SIZES)
def test_every_rank_takes_the_same_number_of_full_batches(world_size, size):
    # The processes step together (DistributedDataParallel), so every rank must run the
    # same number of steps; the last incomplete batch would be a smaller step that the
    # poly schedule does not count.
    steps = []
    for rank in range(world_size):
        batches = trained_indices(
            train_loader(Indices(size), BATCH, DistContext(rank, world_size)), 0)
        assert all(len(batch) == BATCH for batch in batches)
        steps.append(len(batches))
    assert steps == [math.ceil(size / world_size) // BATCH] * world_size


@pytest.mark.parametrize('size', SIZES)
def test_one_process_trains_the_iterations_the_schedule_counts(size):
    for batch in (2, 3, 4):
        loader = train_loader(Indices(size), batch, DistContext())
        assert len(trained_indices(loader, 0)) == len(loader) == \
            iterations_per_epoch(size, batch, 1), batch


@pytest.mark.parametrize('size', SIZES)
@pytest.mark.parametrize('world_size', WORLD_SIZES)
def test_evaluation_shards_take_every_image_once_in_order(world_size, size):
    shards = []
    for rank in range(world_size):
        loader = eval_loader(Indices(size), BATCH, DistContext(rank, world_size))
        batches = [[int(i) for i in names] for _, _, names, _ in loader]
        shard = [i for batch in batches for i in batch]
        assert shard == list(range(rank, size, world_size)), rank
        # Every image, including a last incomplete batch, and each image's own pixels.
        assert [len(b) for b in batches] == \
            [min(BATCH, len(shard) - i) for i in range(0, len(shard), BATCH)]
        for images, _, names, _ in loader:
            assert [int(im[0, 0, 0]) for im in images] == [int(i) for i in names]
        shards.append(shard)
    assert sorted(i for shard in shards for i in shard) == list(range(size))
