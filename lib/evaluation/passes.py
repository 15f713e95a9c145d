"""Test-time modes of evaluation: flip, multi-scale and sliding-window inference.

As in HRNet-Segmentation, every image can be evaluated through several *passes*: one per
scale of TEST.SCALE_LIST (the long side resized to TEST.BASE_SIZE x scale), each also
horizontally flipped with TEST.FLIP_TEST. A pass whose scaled input is larger than the
crop (TEST.IMAGE_SIZE) runs on overlapping crops of that size, with a stride of 2/3 of
the crop, and its scores are averaged where crops overlap. The flipped pass flips each
crop, not the image: its crops are the unflipped pass's windows, each mirrored, run, and
its scores mirrored back into place (HRNet-Segmentation's ``inference(..., flip)`` per
crop). Mirroring the whole image instead would move the windows whenever they do not lie
symmetrically about the image's centre.

Every crop of every pass is one forward of the whole anytime network, so a masked model
computes its confidence masks and its copy aggregation within that forward, from that
forward's own exits; the passes meet only afterwards, exit by exit.

**What is averaged: softmax probabilities.** Whenever more than one score map covers a
pixel (crops, flips or scales), each exit's logits are turned into class probabilities
and the probabilities are averaged. Probabilities of different passes lie on one scale
(each sums to one), so every pass weighs the same; logits do not: their magnitude grows
with the confidence of a pass and differs between exits, and with copy aggregation one
map mixes several exits' logits. HRNet-Segmentation instead averages the flipped pass's
logits and sums ``exp(logits)`` over scales, which lets the most confident pass dominate.
A single forward covering the whole image keeps its logits untouched, so plain
evaluation (one scale, no flip, image within the crop) is today's evaluation exactly.
"""
import math
from dataclasses import dataclass

from datasets.loaders import STRIDE, pad_to_multiple
from models.resize import upsample_to

# Crops overlap by a third: the stride is 2/3 of the crop, as in HRNet-Segmentation.
CROP_STRIDE = 2 / 3


@dataclass(frozen=True)
class EvalModes:
    """The passes each image goes through.

    Args:
        scales (tuple[float]): long side of each pass = ``base_size`` x scale; empty: a
            single pass at the image's own size (no resizing). Default ().
        base_size (int): TEST.BASE_SIZE, the long side of scale 1. Default 0.
        flip (bool): TEST.FLIP_TEST, add the horizontally flipped pass of every scale.
            Default False.
        crop_size (tuple[int, int] or None): (height, width) of the sliding-window crops
            (TEST.IMAGE_SIZE); a pass larger than it in either direction is evaluated
            crop by crop. None: always the whole input. Default None.
        pad_multiple (int): every forward's input is zero-padded at the bottom and right
            to a multiple of this. Default: the network's total stride, since copy
            aggregation needs exits of equal size.
        flip_permutation (tuple[int]): classes a mirror swaps, as
            ``DatasetSpec.flip_permutation()``: in a flipped pass, class c of the image
            is class p[c] of the mirrored input (LIP's left and right arm); empty: no
            class changes. Default ().
    """
    scales: tuple = ()
    base_size: int = 0
    flip: bool = False
    crop_size: tuple = None
    pad_multiple: int = STRIDE
    flip_permutation: tuple = ()

    def __post_init__(self):
        if self.scales and (self.base_size <= 0 or min(self.scales) <= 0):
            raise ValueError(f'scales {self.scales} need a positive base size '
                             f'(got {self.base_size}) and positive values')

    def single_pass(self, size):
        """Whether an image of ``size`` (h, w) goes through one forward of the whole
        image as it is, i.e. plain evaluation."""
        return not self.scales and not self.flip and \
            len(crop_windows(size, self.crop_size)) == 1


def scaled_size(size, scale, base_size):
    """(h, w) of an image of ``size`` whose long side becomes ``base_size * scale``
    (short side in proportion, both rounded half up as in HRNet-Segmentation).

    Args:
        size (tuple[int, int]): (h, w) of the image.
        scale (float): one entry of TEST.SCALE_LIST.
        base_size (int): TEST.BASE_SIZE.
    """
    h, w = size
    long_side = int(base_size * scale + 0.5)
    if h > w:
        return long_side, int(w * long_side / h + 0.5)
    return int(h * long_side / w + 0.5), long_side


def window_starts(length, crop):
    """Starts of the crops along one direction: every ``2/3 * crop`` pixels, the last one
    flush with the end; a single start 0 when ``length`` fits in ``crop``.

    Args:
        length (int): size of the input in this direction.
        crop (int): size of the crop in this direction.
    """
    if length <= crop:
        return [0]
    stride = max(1, int(crop * CROP_STRIDE))
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def crop_windows(size, crop_size):
    """The crops of an input: list of (top, left, height, width), row by row.

    Args:
        size (tuple[int, int]): (h, w) of the input.
        crop_size (tuple[int, int] or None): (h, w) of a crop; None: the whole input.
    """
    h, w = size
    if crop_size is None:
        return [(0, 0, h, w)]
    ch, cw = crop_size
    return [(top, left, min(ch, h), min(cw, w))
            for top in window_starts(h, ch) for left in window_starts(w, cw)]


@dataclass
class Pass:
    """One resized view of the image and the exits' logits of each of its crops (of each
    crop mirrored, when ``flipped``)."""
    size: tuple      # (h, w) of the resized input
    flipped: bool    # each crop ran mirrored; its logits are mirrored back when combined
    windows: list    # (top, left, height, width) per crop
    padded: list     # (h, w) of each crop after padding (its logits cover that)
    logits: list     # per crop: the exits' logits, each 1 x C x h' x w'


class MultiPassResult:
    """The passes of one image, combined exit by exit on request (one exit's full-size
    scores at a time, since all four at once would need four times the memory).

    Args:
        passes (list[Pass]): the passes that ran.
        size (tuple[int, int]): (H, W) of the original image.
        cost (list[float] or None): per-exit cost summed over every forward.
        flip_permutation (tuple[int]): see `EvalModes`.
    """

    def __init__(self, passes, size, cost=None, flip_permutation=()):
        self.passes = passes
        self.flip_permutation = list(flip_permutation)
        self.size = tuple(size)
        self.cost = cost
        self.num_exits = len(passes[0].logits[0])
        self.forwards = sum(len(p.windows) for p in passes)

    @property
    def probabilities(self):
        """Whether :meth:`scores` are class probabilities (several forwards were
        combined) rather than the logits of the one forward."""
        return self.forwards > 1

    def scores(self, k):
        """Exit ``k``'s (0-based) scores at the original size, 1 x C x H x W: the mean of
        the softmax probabilities of every pass (crops averaged where they overlap), or
        the logits themselves when a single forward covered the whole image."""
        total = None
        for p in self.passes:
            scores = self._pass_scores(p, k, self.probabilities)
            total = scores if total is None else total + scores
        return total if len(self.passes) == 1 else total / len(self.passes)

    def _pass_scores(self, p, k, probabilities):
        first = p.logits[0][k]
        total = first.new_zeros(first.shape[:2] + tuple(p.size))
        count = first.new_zeros((1, 1) + tuple(p.size))
        for (top, left, h, w), padded, logits in zip(p.windows, p.padded, p.logits):
            # The padding lies below and right of the (mirrored) crop: cut it, then mirror.
            scores = upsample_to(logits[k], padded)[:, :, :h, :w]
            if p.flipped:
                scores = scores.flip(-1)
                if self.flip_permutation:  # the mirrored input's left is the image's right
                    scores = scores[:, self.flip_permutation]
            if probabilities:
                scores = scores.softmax(dim=1)
            total[:, :, top:top + h, left:left + w] += scores
            count[:, :, top:top + h, left:left + w] += 1
        if len(p.windows) > 1:
            total = total / count
        return upsample_to(total, self.size)


def multi_pass_inference(forward, image, modes):
    """Run every pass of ``modes`` on one image.

    Args:
        forward (callable): ``forward(x)`` -> ``(outputs, cost)`` for a 1 x 3 x h x w
            input (padded to ``modes.pad_multiple``): ``outputs`` the exits' logits
            (each 1 x C x h' x w', covering ``x``), ``cost`` a per-exit list (e.g.
            GFLOPs of this forward) or None.
        image (Tensor): 1 x 3 x H x W, normalised as in evaluation.
        modes (EvalModes): the passes.

    Returns:
        MultiPassResult: the passes, their combined scores per exit, and the per-exit
        cost summed over every forward (None if ``forward`` reports none).
    """
    if image.shape[0] != 1:
        raise ValueError(f'multi-pass inference takes one image at a time, got a batch of '
                         f'{image.shape[0]}')
    size = tuple(image.shape[-2:])
    sizes = [scaled_size(size, s, modes.base_size) for s in modes.scales] or [size]
    passes, cost = [], None
    for scaled in sizes:
        x = upsample_to(image, scaled)  # the normalised tensor, bilinear (linear in the colours)
        windows = crop_windows(scaled, modes.crop_size)  # the same for the flipped pass
        for flipped in (False, True) if modes.flip else (False,):
            logits, padded = [], []
            for top, left, h, w in windows:
                crop = x[:, :, top:top + h, left:left + w]
                crop = pad_to_multiple(crop.flip(-1) if flipped else crop, modes.pad_multiple)
                outputs, crop_cost = forward(crop)
                logits.append(list(outputs))
                padded.append(tuple(crop.shape[-2:]))
                if crop_cost is not None:
                    cost = list(crop_cost) if cost is None else \
                        [a + b for a, b in zip(cost, crop_cost)]
            passes.append(Pass(scaled, flipped, windows, padded, logits))
    return MultiPassResult(passes, size, cost, modes.flip_permutation)
