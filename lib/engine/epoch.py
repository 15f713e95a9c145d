"""One training epoch of the anytime network: the forward under mixed precision, the
multi-exit loss, the optimiser step at the poly learning rate, and its logs."""
import logging
import time

import torch

from utils.distributed import all_reduce
from utils.logger import progress
from .amp import MixedPrecision
from .schedule import poly_lr, set_lr

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss of an exit became NaN or infinite."""


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


def _check_finite(losses, epoch, i_iter, it):
    """Raise NonFiniteLossError naming the first exit whose loss (averaged over all
    processes, so that every process stops together) is not finite."""
    bad = (~torch.isfinite(losses)).nonzero()
    if len(bad):
        k = int(bad[0]) + 1
        raise NonFiniteLossError(
            f'the loss of exit {k} is {losses[k - 1].item()} at epoch {epoch + 1}, iteration '
            f'{i_iter} of the epoch (schedule iteration {it}); nothing of this step was '
            'applied. Lower TRAIN.LR, check the data, or restart from the last checkpoint '
            'with AUTO_RESUME True')


def train_one_epoch(model, loader, optimizer, *, epoch, base_lr, max_it, first_it, ctx,
                    trainable=None, writer=None, global_step=0, print_freq=20,
                    num_epochs=None, precision=None):
    """Train one epoch with the poly learning rate.

    The learning rate of step i (0-based in this epoch) is
    ``poly_lr(base_lr, first_it + i - 1, max_it)``, i.e. it is set after every step from
    the step's schedule iteration, as in the original (the very first step uses
    ``base_lr``).

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
        trainable (list[nn.Module] or None): see :func:`set_train_mode`.
        writer (SummaryWriter or None): TensorBoard writer (rank 0).
        global_step (int): optimiser steps taken so far in the run; step i of the run is
            logged to TensorBoard at x = i (0-based).
        print_freq (int): PRINT_FREQ.
        num_epochs (int or None): total epochs, for messages.
        precision (MixedPrecision or None): TRAIN.AMP; None: float32.

    Returns:
        dict: ``loss`` and ``exit_losses`` (epoch means over all processes),
        ``global_step`` after the epoch, ``skipped_steps`` (steps the gradient scaler
        skipped for infinite gradients; they count in the schedule like the others).

    Raises:
        NonFiniteLossError: a loss became NaN or infinite; the step is not applied.
        EpochInterrupted: Ctrl-C, with the steps the epoch had completed.
    """
    precision = precision or MixedPrecision(ctx.device)
    set_train_mode(model, trainable)
    skipped = 0
    set_lr(optimizer, base_lr if first_it == 0 else poly_lr(base_lr, first_it - 1, max_it))
    sums, count = None, 0
    tic, last_logged = time.time(), -1  # time per iteration since the last Iter line
    bar = progress(loader, f'epoch {epoch + 1}', ctx.is_main)
    try:
        for i_iter, batch in enumerate(bar):
            images = batch[0].to(ctx.device, non_blocking=True)
            labels = batch[1].long().to(ctx.device, non_blocking=True)
            it = first_it + i_iter
            with precision.autocast():
                total, losses, _ = model(images, labels)

            # Mean over processes of [total, exit 1..K]; also the finiteness check of all ranks.
            values = torch.stack([total.detach()] + [l.detach() for l in losses]).double()
            values = all_reduce(values) / ctx.world_size
            _check_finite(values[1:], epoch, i_iter, it)

            optimizer.zero_grad(set_to_none=True)
            skipped += not precision.backward_step(total, optimizer)
            lr = poly_lr(base_lr, it, max_it)
            set_lr(optimizer, lr)
            step = global_step  # 0-based index of this step in the run (TensorBoard x axis)
            global_step += 1

            values = values.cpu()
            sums = values if sums is None else sums + values
            count += 1
            if ctx.is_main:
                bar.set_postfix(loss=f'{values[0].item():.4f}', lr=f'{lr:.2e}')
            if i_iter % print_freq == 0 and ctx.is_main:
                exits = ' '.join(f'{v:.4f}' for v in values[1:].tolist())
                per_iter = (time.time() - tic) / (i_iter - last_logged)
                tic, last_logged = time.time(), i_iter
                logger.info(f'Epoch [{epoch + 1}/{num_epochs}] Iter [{i_iter}/{len(loader)}] '
                            f'time {per_iter:.3f}s/it lr {lr:.6f} loss {values[0].item():.4f} '
                            f'(exits {exits})')
                if writer is not None:
                    writer.add_scalar('train/loss', values[0].item(), step)
                    writer.add_scalar('train/lr', lr, step)
                    for k, v in enumerate(values[1:].tolist(), start=1):
                        writer.add_scalar(f'train/loss_exit{k}', v, step)
    except KeyboardInterrupt:
        raise EpochInterrupted(count, len(loader)) from None
    bar.close()
    means = (sums / max(count, 1)).tolist() if sums is not None else []
    return {'loss': means[0] if means else float('nan'), 'exit_losses': means[1:],
            'global_step': global_step, 'skipped_steps': skipped}
