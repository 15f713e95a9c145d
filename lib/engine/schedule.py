"""The poly learning-rate schedule of HRNet / ADP-C (spec section 4).

After every optimiser step at global iteration ``it`` (0-based) the learning rate is set
to ``base_lr * (1 - it / max_it) ** 0.9``, with ``max_it = epochs * iterations per
epoch``. The first step therefore uses ``base_lr`` itself, as in the original.
"""
from utils.errors import LaunchError

POLY_POWER = 0.9


def iterations_per_epoch(dataset_size, batch_per_gpu, world_size):
    """Iterations of one epoch as the schedule counts them: dataset size divided by the
    effective batch (batch per process x processes), rounded down.

    Args:
        dataset_size (int): images in the training list.
        batch_per_gpu (int): TRAIN.BATCH_SIZE_PER_GPU.
        world_size (int): number of training processes.
    """
    iters = int(dataset_size / (batch_per_gpu * world_size))
    if iters < 1:
        raise LaunchError(f'{dataset_size} training images do not fill one batch of '
                          f'TRAIN.BATCH_SIZE_PER_GPU {batch_per_gpu} x {world_size} processes: '
                          'use a smaller batch, fewer processes or more images')
    return iters


def poly_lr(base_lr, it, max_it, power=POLY_POWER):
    """``base_lr * (1 - it / max_it) ** power``, 0 once ``it`` reaches ``max_it``.

    Args:
        base_lr (float): learning rate at iteration 0.
        it (int): global iteration.
        max_it (int): iterations of the whole schedule.
        power (float): exponent (0.9).
    """
    return base_lr * max(0.0, 1.0 - float(it) / max_it) ** power


def set_lr(optimizer, lr):
    """Set the learning rate of every parameter group of ``optimizer``."""
    for group in optimizer.param_groups:
        group['lr'] = lr
