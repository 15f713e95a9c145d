"""One training epoch of the anytime network: the forward under mixed precision, the
multi-exit loss, the optimiser step at the poly learning rate, and its logs."""
import logging
import time

import torch

from utils.distributed import all_reduce
from utils.logger import progress
from .amp import AMP_ADVICE, MAX_NON_FINITE_RUN, BufferSnapshot, MixedPrecision, \
    MixedPrecisionError
from .schedule import poly_lr, set_lr

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss of an exit became NaN or infinite: at once without TRAIN.AMP, in
    MAX_NON_FINITE_RUN steps in a row under it."""


class EpochInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during an epoch, with how far the epoch had come.

    Args:
        steps (int): optimiser steps the epoch had taken.
        total (int): steps of the whole epoch.
    """

    def __init__(self, steps, total):
        super().__init__(f'{steps} of {total} steps')
        self.steps, self.total = steps, total


def set_train_mode(model, trainable=None):
    """Put ``model`` in training mode, or, when only some modules train (EE_ONLY /
    ALLE_ONLY), everything in eval mode except those modules, so that frozen BatchNorm
    statistics do not move.

    Args:
        model (nn.Module): the module to switch.
        trainable (list[nn.Module] or None): modules that train; None for all.
    """
    if trainable is None:
        model.train()
        return
    model.eval()
    for module in trainable:
        module.train()


def _first_non_finite(losses):
    """1-based number of the first exit whose loss is not finite, or None.

    ``losses`` are averaged over all processes, so that every process decides alike
    (a step skipped on one rank only would leave the others waiting in the backward's
    all-reduce)."""
    bad = (~torch.isfinite(losses)).nonzero()
    return int(bad[0]) + 1 if len(bad) else None


def _where(epoch, i_iter, it):
    return f'epoch {epoch + 1}, iteration {i_iter} of the epoch (schedule iteration {it})'


RESTART = ('Lower TRAIN.LR, check the data, or restart from the last checkpoint with '
           'AUTO_RESUME True')


def _skip_non_finite(precision, where, exit_, value, ctx):
    """Note a step skipped under TRAIN.AMP for its non-finite loss, and stop training
    when it makes MAX_NON_FINITE_RUN in a row (a run may span epochs)."""
    if precision.non_finite_run == 0:
        precision.non_finite_start = f'{where}, exit {exit_}: {value}'
    precision.non_finite_run += 1
    if precision.non_finite_run >= MAX_NON_FINITE_RUN:
        raise NonFiniteLossError(
            f'the loss was not finite in {precision.non_finite_run} steps in a row under '
            f'TRAIN.AMP, the first at {precision.non_finite_start}; none of them was '
            f'applied. {RESTART}')
    if ctx.is_main:
        logger.warning(f'{where}: the loss of exit {exit_} is {value} under TRAIN.AMP; step '
                       f'skipped ({precision.non_finite_run} in a row, '
                       f'{MAX_NON_FINITE_RUN} stop training)')


def train_one_epoch(model, loader, optimizer, *, epoch, base_lr, max_it, first_it, ctx,
                    first_lr=None, trainable=None, writer=None, global_step=0, print_freq=20,
                    num_epochs=None, precision=None):
    """Train one epoch with the poly learning rate.

    The learning rate of step i (0-based in this epoch) is
    ``poly_lr(base_lr, first_it + i - 1, max_it)``, i.e. it is set after every step from
    the step's schedule iteration, as in the original (the very first step of the
    schedule uses ``first_lr``, the optimiser's initial rate in the original). A resumed
    epoch therefore starts where the schedule left off, as the original's restored
    optimiser did.

    Args:
        model (nn.Module): FullModel, possibly wrapped in DistributedDataParallel;
            returns (total loss, per-exit losses, outputs).
        loader (DataLoader): yields (images, labels, names).
        optimizer (torch.optim.Optimizer): the optimiser.
        epoch (int): 0-based epoch of the run (for messages).
        base_lr (float): base learning rate of the schedule.
        max_it (int): iterations of the whole schedule.
        first_it (int): schedule iteration of this epoch's first step.
        ctx (DistContext): this process.
        first_lr (float or None): learning rate of schedule iteration 0; None:
            ``base_lr``.
        trainable (list[nn.Module] or None): see :func:`set_train_mode`.
        writer (SummaryWriter or None): TensorBoard writer (rank 0).
        global_step (int): optimiser steps taken so far in the run; step i of the run is
            logged to TensorBoard at x = i (0-based).
        print_freq (int): PRINT_FREQ.
        num_epochs (int or None): total epochs, for messages.
        precision (MixedPrecision or None): TRAIN.AMP; None: float32.

    Returns:
        dict: ``loss`` and ``exit_losses`` (means over all processes of the steps whose
        loss was finite), ``global_step`` after the epoch, ``skipped_steps`` (steps the
        gradient scaler skipped for infinite gradients) and ``non_finite_steps`` (steps
        skipped under TRAIN.AMP for a non-finite loss). Skipped steps count in the
        schedule like the others.

    Raises:
        NonFiniteLossError: a loss became NaN or infinite (without TRAIN.AMP), or did so
            in MAX_NON_FINITE_RUN steps in a row (under it); that step is not applied.
        MixedPrecisionError: under TRAIN.AMP, no step of the epoch was applied, or the
            gradient scaler's scale fell below MIN_LOSS_SCALE.
        EpochInterrupted: Ctrl-C, with the steps the epoch had completed.
    """
    first_global_step = global_step
    precision = precision or MixedPrecision(ctx.device)
    # Under AMP a skipped step also gives back what its forward did to BatchNorm's
    # running statistics (an overflowed activation would leave them infinite).
    snapshot = BufferSnapshot(model) if precision.enabled else None
    set_train_mode(model, trainable)
    skipped = non_finite = 0  # steps skipped by the gradient scaler; for their loss
    if first_it == 0:
        set_lr(optimizer, base_lr if first_lr is None else first_lr)
    else:
        set_lr(optimizer, poly_lr(base_lr, first_it - 1, max_it))
    sums, count = None, 0
    tic, last_logged = time.time(), -1  # time per iteration since the last Iter line
    bar = progress(loader, f'epoch {epoch + 1}', ctx.is_main)
    try:
        for i_iter, batch in enumerate(bar):
            images = batch[0].to(ctx.device, non_blocking=True)
            labels = batch[1].long().to(ctx.device, non_blocking=True)
            it = first_it + i_iter
            if snapshot is not None:
                snapshot.take()
            with precision.autocast():
                total, losses, _ = model(images, labels)

            # Mean over processes of [total, exit 1..K]; also the finiteness check of all ranks.
            values = torch.stack([total.detach()] + [l.detach() for l in losses]).double()
            values = all_reduce(values) / ctx.world_size
            bad_exit = _first_non_finite(values[1:])
            if bad_exit is None:
                precision.non_finite_run = 0
                optimizer.zero_grad(set_to_none=True)
                if not precision.backward_step(total, optimizer):
                    skipped += 1
                    precision.check_scale(epoch, i_iter, skipped)
            elif not precision.enabled:
                raise NonFiniteLossError(
                    f'the loss of exit {bad_exit} is {values[bad_exit].item()} at '
                    f'{_where(epoch, i_iter, it)}; nothing of this step was applied. {RESTART}')
            else:  # no backward, no step; the schedule moves on as for any other step
                snapshot.restore()
                non_finite += 1
                _skip_non_finite(precision, _where(epoch, i_iter, it), bad_exit,
                                 values[bad_exit].item(), ctx)
            lr = poly_lr(base_lr, it, max_it)
            set_lr(optimizer, lr)
            step = global_step  # 0-based index of this step in the run (TensorBoard x axis)
            global_step += 1

            values = values.cpu()
            if bad_exit is None:
                sums = values if sums is None else sums + values
                count += 1
            if ctx.is_main:
                bar.set_postfix(loss=f'{values[0].item():.4f}', lr=f'{lr:.2e}')
            if i_iter % print_freq == 0 and ctx.is_main:
                exits = ' '.join(f'{v:.4f}' for v in values[1:].tolist())
                per_iter = (time.time() - tic) / (i_iter - last_logged)
                tic, last_logged = time.time(), i_iter
                scale = precision.scale
                amp = '' if scale is None else f' scale {scale:g}'
                if skipped or non_finite:
                    amp += f' skipped {skipped + non_finite}'
                logger.info(f'Epoch [{epoch + 1}/{num_epochs}] Iter [{i_iter}/{len(loader)}] '
                            f'time {per_iter:.3f}s/it lr {lr:.6f}{amp} loss '
                            f'{values[0].item():.4f} (exits {exits})')
                if writer is not None:
                    writer.add_scalar('train/loss', values[0].item(), step)
                    writer.add_scalar('train/lr', lr, step)
                    if scale is not None:
                        writer.add_scalar('train/loss_scale', scale, step)
                    for k, v in enumerate(values[1:].tolist(), start=1):
                        writer.add_scalar(f'train/loss_exit{k}', v, step)
    except KeyboardInterrupt:
        # Every step taken counts, also one skipped under AMP: the schedule moved on.
        raise EpochInterrupted(global_step - first_global_step, len(loader)) from None
    bar.close()
    steps = global_step - first_global_step
    if precision.enabled and steps and skipped + non_finite == steps:
        raise MixedPrecisionError(
            f'epoch {epoch + 1}: all {steps} steps were skipped under TRAIN.AMP ({skipped} by '
            f'the gradient scaler for infinite or NaN gradients, {non_finite} for a '
            f'non-finite loss), so nothing was trained: {AMP_ADVICE}')
    means = (sums / max(count, 1)).tolist() if sums is not None else []
    return {'loss': means[0] if means else float('nan'), 'exit_losses': means[1:],
            'global_step': global_step, 'skipped_steps': skipped,
            'non_finite_steps': non_finite}
