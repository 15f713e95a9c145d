"""DataLoaders of training and evaluation, sharded over the processes of a run."""
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from utils.errors import LaunchError


class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...``: every image is evaluated exactly once
    over all processes (DistributedSampler would repeat images to even out the shards,
    which would bias the summed confusion matrices).

    Args:
        size (int): dataset length.
        rank (int): this process's rank.
        world_size (int): number of processes.
    """

    def __init__(self, size, rank=0, world_size=1):
        self.indices = list(range(rank, size, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def train_loader(dataset, batch_size, ctx, shuffle=True, workers=0, pin_memory=False):
    """Loader of one training process: a DistributedSampler shard (the whole set in a
    single-process run) with full batches only. Call ``loader.sampler.set_epoch(epoch)``
    before each epoch so that the shuffle changes and is reproducible on resume.

    Args:
        dataset (Dataset): training set.
        batch_size (int): TRAIN.BATCH_SIZE_PER_GPU.
        ctx (DistContext): this process.
        shuffle (bool): TRAIN.SHUFFLE.
        workers (int): WORKERS.
        pin_memory (bool): PIN_MEMORY (only used on CUDA).
    """
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=shuffle, seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=pin_memory and ctx.device.type == 'cuda', drop_last=True)
    if len(loader) == 0:
        raise LaunchError(f'{len(dataset)} training images give no full batch of '
                          f'TRAIN.BATCH_SIZE_PER_GPU {batch_size} per process over '
                          f'{ctx.world_size} processes: lower the batch size or add images')
    return loader


def eval_loader(dataset, batch_size, ctx, workers=0, pin_memory=False):
    """Loader of one evaluation process: its :class:`ShardSampler` shard, in order.

    Args:
        dataset (Dataset): evaluation set.
        batch_size (int): TEST.BATCH_SIZE_PER_GPU.
        ctx (DistContext): this process.
        workers (int): WORKERS.
        pin_memory (bool): PIN_MEMORY (only used on CUDA).
    """
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory and ctx.device.type == 'cuda')

