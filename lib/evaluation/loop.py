"""One evaluation pass of the anytime network: per-exit confusion matrices (and FLOPs,
submission files, panels) over a loader, summed over processes."""
import torch

from datasets.loaders import pad_to, padded_size
from models.layout import inference
from models.resize import upsample_to
from utils.logger import progress
from .metrics import ConfusionMatrix
from .passes import multi_pass_inference


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
            ``evaluation.passes``); None or a single whole-image pass: the batch as it is.
        writer (SubmissionWriter or None): also write the full-size predictions of its
            exits.
        on_batch (callable or None): ``on_batch(images, labels, names, outputs)`` after
            each batch of single-pass evaluation (outputs: the exits' logits), and
            ``on_batch(image, labels, [name], scores, passes)`` after each image of
            multi-pass evaluation (scores: each exit's combined scores as scored, on the
            host; passes: the MultiPassResult); e.g.
            ``evaluation.panel_writer.PanelWriter``.

    Returns:
        list[ConfusionMatrix]: one per exit, reduced over all processes (the meter, if
        given, is reduced too).
    """
    matrices = [ConfusionMatrix(num_classes, ignore_label) for _ in range(num_exits)]
    with inference(model):  # eval mode, channels-last; restored after (validation)
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
                kept = [] if on_batch is not None else None
                _score_exits(_keeping(scores, kept), labels, batch[2][i:i + 1], matrices, writer)
                if on_batch is not None:
                    on_batch(image, labels, batch[2][i:i + 1], kept, result)
    for matrix in matrices:
        matrix.reduce_from_all_processes()
    if flops_meter is not None:
        flops_meter.reduce_from_all_processes(num_exits)
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


def _keeping(scores, kept):
    """Yield ``scores``, appending a host copy of each to ``kept`` (unless None): the
    scores that were scored, kept without holding every exit's on the device."""
    for s in scores:
        if kept is not None:
            kept.append(s.cpu())
        yield s


def _costed_forward(model, flops_meter):
    """``forward(x) -> (logits, cost)`` for multi-pass inference: the cost of every pass
    is counted from its own masks, as plain evaluation counts an image."""
    def forward(x):
        if flops_meter is None:
            return model(x), None
        outputs, masks = model(x, return_masks=True)
        return outputs, flops_meter.measure(x.shape, masks)
    return forward
