"""The checkpoints of a training run: ``checkpoint.pth.tar`` written atomically after
every epoch and read back on resume (model, optimiser, gradient scaler, progress), with
every process of a distributed run reading the file rank 0 resumes from."""
import os
import socket
from dataclasses import dataclass

from utils.checkpoint import read_checkpoint
from utils.distributed import all_gather_object, broadcast_object
from utils.errors import CheckpointError
from utils.io import atomic_torch_save

CHECKPOINT = 'checkpoint.pth.tar'
BEST = 'best.pth'


@dataclass
class TrainState:
    """Progress of a run, saved in every checkpoint.

    Args:
        epoch (int): epochs completed (the next epoch to train, 0-based).
        iteration (int): optimiser steps taken (TensorBoard x axis).
        best_miou (float): best mean mIoU over the exits seen in validation.
    """
    epoch: int = 0
    iteration: int = 0
    best_miou: float = 0.0

    def summary(self):
        """Where the run stands, for the log of a resume: epochs, steps and the best
        validation, or that none was measured yet (a best of 0 is no measurement)."""
        best = (f'best mean mIoU {self.best_miou * 100:.2f}' if self.best_miou > 0
                else 'no validation mIoU measured yet')
        return f'{self.epoch} epoch(s) done, {self.iteration} steps, {best}'


def save_checkpoint(path, state, full_model, optimizer, precision=None):
    """Write ``checkpoint.pth.tar`` atomically: epoch, iteration, best_mIoU, state_dict
    (FullModel format), optimizer and, with a gradient scaler (TRAIN.AMP on CUDA), its
    state as ``scaler``.

    Args:
        path (str): destination.
        state (TrainState): progress after the epoch just finished.
        full_model (FullModel): the unwrapped training module.
        optimizer (torch.optim.Optimizer): its optimiser.
        precision (MixedPrecision or None): TRAIN.AMP of the run.
    """
    # Plain Python numbers, so that the file loads with torch.load(weights_only=True).
    checkpoint = {'epoch': int(state.epoch), 'iteration': int(state.iteration),
                  'best_mIoU': float(state.best_miou), 'state_dict': full_model.state_dict(),
                  'optimizer': optimizer.state_dict()}
    scaler = precision.state_dict() if precision is not None else None
    if scaler is not None:
        checkpoint['scaler'] = scaler
    atomic_torch_save(checkpoint, path)


_FIX = ('it was written by a run with another configuration: move it away, choose '
        'another OUTPUT_DIR, or set AUTO_RESUME False to start afresh (overwriting it)')


def restore_model(checkpoint, path, full_model):
    """Load a checkpoint's weights into ``full_model`` (strict: the model must match).

    Args:
        checkpoint (dict): the content of ``path``.
        path (str): where it was read, for messages.
        full_model (FullModel): the unwrapped training module.

    Returns:
        TrainState: the progress stored in the checkpoint.
    """
    missing = [k for k in ('epoch', 'best_mIoU', 'state_dict', 'optimizer')
               if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f'{path} is no checkpoint of a training run (it lacks '
                              f"{', '.join(missing)}): move it away, or choose another OUTPUT_DIR")
    try:
        full_model.load_state_dict(checkpoint['state_dict'])
    except RuntimeError as e:
        raise CheckpointError(f'{path} does not fit the model of this run; {_FIX}.\n{e}') from None
    return TrainState(epoch=int(checkpoint['epoch']),
                      iteration=int(checkpoint.get('iteration', 0)),
                      best_miou=float(checkpoint['best_mIoU']))


def restore_optimizer(checkpoint, path, optimizer, precision=None):
    """Load a checkpoint's optimiser state (and gradient scaler state, if both the
    checkpoint and ``precision`` have a scaler).

    Args:
        checkpoint (dict): the content of ``path``.
        path (str): where it was read, for messages.
        optimizer (torch.optim.Optimizer): the run's optimiser.
        precision (MixedPrecision or None): TRAIN.AMP of the run.
    """
    try:
        optimizer.load_state_dict(checkpoint['optimizer'])
    except ValueError as e:
        raise CheckpointError(f'the optimiser state in {path} does not fit this run (were '
                              f'TRAIN.EE_ONLY/ALLE_ONLY changed?); {_FIX}.\n{e}') from None
    if precision is not None:
        precision.load_state_dict(checkpoint.get('scaler'))


def load_checkpoint(path, full_model, optimizer=None, precision=None):
    """Restore a run from ``checkpoint.pth.tar`` (strict: the model must match).

    Args:
        path (str): the checkpoint.
        full_model (FullModel): the unwrapped training module.
        optimizer (torch.optim.Optimizer or None): restored too when given.
        precision (MixedPrecision or None): its gradient scaler restored too.

    Returns:
        TrainState: the progress stored in the checkpoint.
    """
    checkpoint = read_checkpoint(path)
    state = restore_model(checkpoint, path, full_model)
    if optimizer is not None:
        restore_optimizer(checkpoint, path, optimizer, precision)
    return state


def decide_resume(wanted, path, ctx):
    """Rank 0 decides whether the run resumes from ``path``, and every process follows.

    Ranks that looked on their own could disagree (nodes without a shared OUTPUT_DIR,
    a stale network filesystem cache): some would start afresh while rank 0 resumes,
    DistributedDataParallel would not notice, and the run would hang at the end of the
    shortest epoch loop.

    Args:
        wanted (bool): AUTO_RESUME or TRAIN.RESUME.
        path (str): the run's checkpoint.
        ctx (DistContext): this process.

    Returns:
        bool: resume (the same on every process).
    """
    return bool(broadcast_object(wanted and os.path.isfile(path) if ctx.is_main else None))


def read_checkpoint_everywhere(path, ctx):
    """Every process reads the checkpoint rank 0 resumes from; all fail together if one
    cannot, or reads another epoch than rank 0 (an old copy of the file).

    Args:
        path (str): the checkpoint.
        ctx (DistContext): this process.

    Returns:
        dict: the checkpoint.

    Raises:
        CheckpointError: naming each failing rank, its host and the path; in a
            single-process run, what is wrong with the file.
    """
    checkpoint, problem = None, None
    try:
        checkpoint = read_checkpoint(path)
    except (CheckpointError, OSError) as e:  # OSError: no permission to read the file
        if not ctx.distributed:  # one process: no other rank, host or copy to advise about
            raise CheckpointError(f'cannot resume the run: {e}, or set AUTO_RESUME False to '
                                  'start afresh') from None
        problem = f'cannot read it: {e}'
    # A file without an epoch is refused by restore_model, on every rank alike.
    epoch = checkpoint.get('epoch') if isinstance(checkpoint, dict) else None
    reports = all_gather_object((socket.gethostname(), epoch, problem))
    first_epoch = reports[0][1]
    faults = [f'rank {rank} on host {host} {problem}' if problem else
              f'rank {rank} on host {host} reads epoch {epoch} (rank 0: {first_epoch})'
              for rank, (host, epoch, problem) in enumerate(reports)
              if problem or epoch != first_epoch]
    if faults:
        raise CheckpointError(
            f'rank 0 resumes from {path}, but ' + '; '.join(faults) + '. Every process '
            'must read the same file: put OUTPUT_DIR on a filesystem that all nodes share '
            '(or copy the run directory to every node), or set AUTO_RESUME False to start '
            'afresh')
    return checkpoint
