"""One training epoch and one evaluation pass of the anytime network."""
import logging
import time

import torch

from utils.distributed import all_reduce
from utils.logger import progress
from .amp import MixedPrecision
from .criterion import upsample_to
from .inference import multi_pass_inference
from .loaders import pad_to, padded_size
from .metrics import ConfusionMatrix
from .schedule import poly_lr, set_lr

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss of an exit became NaN or infinite."""


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
    """
    precision = precision or MixedPrecision(ctx.device)
    set_train_mode(model, trainable)
    skipped = 0
    set_lr(optimizer, base_lr if first_it == 0 else poly_lr(base_lr, first_it - 1, max_it))
    sums, count = None, 0
    tic, last_logged = time.time(), -1  # time per iteration since the last Iter line
    bar = progress(loader, f'epoch {epoch + 1}', ctx.is_main)
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
    bar.close()
    means = (sums / max(count, 1)).tolist() if sums is not None else []
    return {'loss': means[0] if means else float('nan'), 'exit_losses': means[1:],
            'global_step': global_step, 'skipped_steps': skipped}


def padded_groups(batch, ignore_label):
    """Split an evaluation batch into groups of images of the same padded size.

    Each image runs at its own size rounded up to the network's stride (right and bottom
    padding: 0 for the image, ``ignore_label`` for the label), whatever the other images
    of its batch, so that results do not depend on the batch size.

    Args:
        batch (tuple): ``(images, labels, names[, sizes])`` from the evaluation loader;
            ``sizes`` (N x 2, each image's own h, w) comes from ``loaders.pad_collate``,
            without it every image is taken to be the whole tensor.
        ignore_label (int): TRAIN.IGNORE_LABEL.
    Yields:
        tuple: (row indices in the batch, images n x 3 x H' x W', labels n x H' x W').
    """
    images, labels = batch[0], batch[1]
    sizes = batch[3].tolist() if len(batch) > 3 else [images.shape[-2:]] * len(images)
    groups = {}
    for i, size in enumerate(sizes):
        groups.setdefault(padded_size(size), []).append(i)
    for size, rows in groups.items():
        index = torch.tensor(rows)
        yield (rows, pad_to(images[index], size, 0.0),
               pad_to(labels[index].long(), size, ignore_label))


@torch.no_grad()
def evaluate(model, loader, num_classes, ignore_label, ctx, num_exits=4, flops_meter=None,
             desc='eval', modes=None, writer=None, on_batch=None):
    """Per-exit confusion matrices of ``model`` over ``loader``, summed over processes.

    Images of any size are padded to a multiple of the network's stride (see
    :func:`padded_groups`); padded pixels are ignored by the metrics. FLOPs are those of
    the padded input, since that is what runs.

    Args:
        model (nn.Module): the anytime network (not the FullModel); ``model(x)`` returns
            the logits of every exit (``model(x, return_masks=True)`` also the masks it
            used, when ``flops_meter`` is given).
        loader (DataLoader): yields (images, labels, names[, sizes]), one shard per
            process.
        num_classes (int): DATASET.NUM_CLASSES.
        ignore_label (int): TRAIN.IGNORE_LABEL.
        ctx (DistContext): this process.
        num_exits (int): number of outputs of the model.
        flops_meter (FlopsMeter or None): also count the cost of every exit, from the
            masks of the same forward (with ``modes``, the cost of all the passes of an
            image).
        desc (str): progress-bar label.
        modes (EvalModes or None): flip, multi-scale and sliding-window passes (see
            ``core.inference``); None or a single whole-image pass: the batch as it is.
        writer (SubmissionWriter or None): also write the full-size predictions of its
            exits.
        on_batch (callable or None): ``on_batch(images, labels, names, outputs)`` after
            each single-pass batch (e.g. ``core.visualize.PanelWriter``).

    Returns:
        list[ConfusionMatrix]: one per exit, reduced over all processes (the meter, if
        given, is reduced too).
    """
    was_training = model.training
    model.eval()
    matrices = [ConfusionMatrix(num_classes, ignore_label) for _ in range(num_exits)]
    for batch in progress(loader, desc, ctx.is_main, log_lines=True):
        sizes = batch[3].tolist() if len(batch) > 3 else None
        if modes is None or modes.single_pass(batch[0].shape[-2:]):
            for rows, images, labels in padded_groups(batch, ignore_label):
                images = images.to(ctx.device, non_blocking=True)
                labels = labels.to(ctx.device, non_blocking=True)
                if flops_meter is None:
                    outputs = model(images)
                else:
                    outputs, masks = model(images, return_masks=True)
                    flops_meter.update(images.shape, masks)
                if len(outputs) != num_exits:
                    raise ValueError(f'the model returned {len(outputs)} outputs, expected '
                                     f'{num_exits}')
                _score_exits(outputs, labels, [batch[2][r] for r in rows], matrices, writer,
                             None if sizes is None else [sizes[r] for r in rows])
                if on_batch is not None:
                    on_batch(images, labels, [batch[2][r] for r in rows], outputs)
            continue
        for i in range(batch[0].shape[0]):  # passes run image by image, at its own size
            # Unpadded: scales and flips are of the image itself (each forward is padded).
            h, w = batch[0].shape[-2:] if sizes is None else sizes[i]
            image = batch[0][i:i + 1, :, :h, :w].to(ctx.device, non_blocking=True)
            labels = batch[1][i:i + 1, :h, :w].long().to(ctx.device, non_blocking=True)
            result = multi_pass_inference(_costed_forward(model, flops_meter), image, modes)
            if result.num_exits != num_exits:
                raise ValueError(f'the model returned {result.num_exits} outputs, expected '
                                 f'{num_exits}')
            if flops_meter is not None:
                flops_meter.add(result.cost, result.forwards)
            # One exit's full-size scores at a time (all four would need 4x the memory).
            scores = (result.scores(k) for k in range(num_exits))
            _score_exits(scores, labels, batch[2][i:i + 1], matrices, writer)
    for matrix in matrices:
        matrix.reduce_from_all_processes()
    if flops_meter is not None:
        flops_meter.reduce_from_all_processes(num_exits)
    model.train(was_training)
    return matrices


def _score_exits(outputs, labels, names, matrices, writer, sizes=None):
    """Add each exit's scores (any resolution) to its matrix and, for the writer's exits,
    queue the full-size predictions (cropped to each image's own ``sizes`` (h, w), when
    padded)."""
    for k, (matrix, scores) in enumerate(zip(matrices, outputs), start=1):
        if writer is None or k not in writer.exits:
            matrix.update(scores, labels)
            continue
        predictions = upsample_to(scores, labels.shape[-2:]).argmax(dim=1)  # N x H x W
        matrix.add(predictions, labels)
        # uint8 (trainIds < 256): an eighth of the int64 copy to the host.
        predictions = predictions.to(torch.uint8).cpu().numpy()
        for i, (name, prediction) in enumerate(zip(names, predictions)):
            if sizes is not None:
                prediction = prediction[:sizes[i][0], :sizes[i][1]]
            writer.add(k, name, prediction)


def _costed_forward(model, flops_meter):
    """``forward(x) -> (logits, cost)`` for multi-pass inference: the cost of every pass
    is counted from its own masks, as plain evaluation counts an image."""
    def forward(x):
        if flops_meter is None:
            return model(x), None
        outputs, masks = model(x, return_masks=True)
        return outputs, flops_meter.measure(x.shape, masks)
    return forward
