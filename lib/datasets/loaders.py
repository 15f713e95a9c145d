"""DataLoaders of training and evaluation, sharded over the processes of a run."""
from functools import partial

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from utils.errors import LaunchError

# The network's total stride: HRNet's four branches divide the input by 4, 8, 16, 32 (and
# the flex heads pool by 8 at 1/4 resolution); the exits' sizes only agree when the
# input is a multiple of it.
STRIDE = 32


def padded_size(size, stride=STRIDE):
    """(h, w) rounded up to multiples of ``stride``."""
    return tuple(-(-int(s) // stride) * stride for s in size)


def pad_to(tensor, size, value):
    """``tensor`` (... x h x w) padded on the right and bottom to ``size`` with ``value``."""
    h, w = tensor.shape[-2:]
    return F.pad(tensor, (0, size[1] - w, 0, size[0] - h), value=value)


def pad_to_multiple(x, multiple=STRIDE):
    """Zero-pad ``x`` (... x h x w) at the bottom and right to multiples of ``multiple``
    (zero is the mean colour of a normalised image); the caller reads the prediction
    back from the unpadded part."""
    size = padded_size(x.shape[-2:], multiple)
    return x if size == tuple(x.shape[-2:]) else pad_to(x, size, 0.0)


def pad_collate(batch, ignore_label, stride=STRIDE):
    """Batch evaluation samples of any sizes, as mmsegmentation's size divisor does.

    Every image is padded on the right and bottom, with 0 (the mean colour, after
    normalisation), and its label with ``ignore_label``, to the largest padded size of
    the batch; :func:`evaluation.loop.evaluate` runs each image at its own padded size (a
    multiple of ``stride``), so that its results do not depend on the batch.

    Args:
        batch (list): ``(image 3 x h x w, label h x w, name)`` samples.
        ignore_label (int): TRAIN.IGNORE_LABEL.
        stride (int): the network's stride.
    Returns:
        tuple: images N x 3 x H x W, labels N x H x W, names, and sizes: N x 2 int64
        (each image's own h, w before padding).
    """
    images, labels, names = zip(*batch)
    size = tuple(max(dims) for dims in zip(*(padded_size(im.shape[-2:], stride)
                                              for im in images)))
    sizes = torch.tensor([im.shape[-2:] for im in images], dtype=torch.int64)
    return (torch.stack([pad_to(im, size, 0.0) for im in images]),
            torch.stack([pad_to(lb, size, ignore_label) for lb in labels]), list(names), sizes)


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


def augmentation_seed(epoch, index):
    """The seed of sample ``index``'s augmentation in ``epoch``: distinct for every
    (epoch, sample), and the same in every process that reads it."""
    return epoch << 32 | index


class EpochSeeds(Sampler):
    """The indices of ``sampler``, each with its :func:`augmentation_seed` in the current
    epoch: ``(index, seed)``, which a training set (``Cityscapes``) reads as "augment
    with ``random.Random(seed)``".

    The augmentation of a sample thus depends on the epoch and the sample only, not on
    the worker process that reads it, what that worker read before, or how many workers
    there are: workers kept alive across epochs (``persistent_workers``) keep the
    random state they were started with, so seeding the processes once per epoch could
    not do it.

    Args:
        sampler (DistributedSampler): the order of the epoch.
    """

    def __init__(self, sampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch):
        """Shuffle and seed for ``epoch`` (0-based)."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((index, augmentation_seed(self.epoch, index)) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)


def train_loader(dataset, batch_size, ctx, shuffle=True, workers=0, pin_memory=False):
    """Loader of one training process: a DistributedSampler shard (the whole set in a
    single-process run) with full batches only, each sample with the seed of its
    augmentation (:class:`EpochSeeds`). Call ``loader.sampler.set_epoch(epoch)`` before
    each epoch so that the shuffle and the augmentation change and are reproducible on
    resume. Worker processes are started once and kept for every epoch.

    Args:
        dataset (Dataset): training set.
        batch_size (int): TRAIN.BATCH_SIZE_PER_GPU.
        ctx (DistContext): this process.
        shuffle (bool): TRAIN.SHUFFLE.
        workers (int): WORKERS.
        pin_memory (bool): PIN_MEMORY (only used on CUDA).
    """
    sampler = EpochSeeds(DistributedSampler(dataset, num_replicas=ctx.world_size,
                                            rank=ctx.rank, shuffle=shuffle, seed=0))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0,
                        pin_memory=pin_memory and ctx.device.type == 'cuda', drop_last=True)
    if len(loader) == 0:
        raise LaunchError(f'{len(dataset)} training images give no full batch of '
                          f'TRAIN.BATCH_SIZE_PER_GPU {batch_size} per process over '
                          f'{ctx.world_size} processes: lower the batch size or add images')
    return loader


def eval_loader(dataset, batch_size, ctx, workers=0, pin_memory=False, ignore_label=255):
    """Loader of one evaluation process: its :class:`ShardSampler` shard, in order, with
    images of any size padded by :func:`pad_collate`. Worker processes are started once
    and kept for every pass over it (a validation every epoch).

    Args:
        dataset (Dataset): evaluation set.
        batch_size (int): TEST.BATCH_SIZE_PER_GPU.
        ctx (DistContext): this process.
        workers (int): WORKERS.
        pin_memory (bool): PIN_MEMORY (only used on CUDA).
        ignore_label (int): TRAIN.IGNORE_LABEL, the label of padded pixels.
    """
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=workers > 0,
                      pin_memory=pin_memory and ctx.device.type == 'cuda',
                      collate_fn=partial(pad_collate, ignore_label=ignore_label))

